"""Prometheus exposition shared by the services; each service builds its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]


def exposition(registry: CollectorRegistry) -> bytes:
    """Render a registry in the Prometheus text format."""
    return generate_latest(registry)
