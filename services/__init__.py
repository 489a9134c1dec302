"""Safeguard's three services (ingest, risk, notify) and the plumbing they share."""
