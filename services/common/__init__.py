"""Plumbing shared by the services: logging, clock, Kafka settings, authentication, HTTP."""
