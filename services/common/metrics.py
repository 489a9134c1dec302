"""Prometheus exposition shared by the services; each service builds its own registry.

`service_registry` is where every service's registry comes from, so that all three
expose the same platform series: the process (`process_*`: memory, CPU, open file
descriptors, start time), the interpreter (`python_*`), the build
(`safeguard_build_info{version, revision}`) and, for the stream services, the policy
file they loaded (`safeguard_policy_info{sha256}`). Counters and histograms expose no
`_created` series: Prometheus does not use them and they double the series count.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REVISION_VARIABLE",
    "build_labels",
    "exposition",
    "policy_digest",
    "record_policy",
    "service_registry",
]

#: Set by the image build (`docker build --build-arg SAFEGUARD_REVISION=$(git rev-parse HEAD)`).
REVISION_VARIABLE = "SAFEGUARD_REVISION"
UNKNOWN = "unknown"
DISTRIBUTION = "safeguard"
# Enough of the SHA-256 to tell policy versions apart, short enough to read on a graph.
DIGEST_LENGTH = 12


def build_labels(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return `version` (the installed package's) and `revision` (from the image build)."""
    values = os.environ if environ is None else environ
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = UNKNOWN
    revision = values.get(REVISION_VARIABLE, "").strip() or UNKNOWN
    # A label value is bounded by what one process runs: one version, one revision.
    return {"version": version, "revision": revision[:40]}


def service_registry(environ: Mapping[str, str] | None = None) -> CollectorRegistry:
    """Return a registry with the process, platform and build series already on it."""
    # A switch of prometheus_client for the whole process; every service wants it off.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Info(
        "safeguard_build",
        "The running build: package version and source revision (1 per process).",
        registry=registry,
    ).info(build_labels(environ))
    return registry


def policy_digest(content: bytes) -> str:
    """Return the short SHA-256 a policy file is known by (`sha256sum FILE | cut -c1-12`)."""
    return hashlib.sha256(content).hexdigest()[:DIGEST_LENGTH]


def record_policy(registry: CollectorRegistry, path: Path) -> str:
    """Expose which policy file this process loaded as `safeguard_policy_info{sha256}`.

    One series per process, its label the digest of the file's bytes: a change of policy
    is a new series, which the dashboard marks as an annotation.
    """
    digest = policy_digest(path.read_bytes())
    Info(
        "safeguard_policy",
        "The policy file this process loaded, by the first 12 hex digits of its SHA-256.",
        registry=registry,
    ).info({"sha256": digest})
    return digest


def exposition(registry: CollectorRegistry) -> bytes:
    """Render a registry in the Prometheus text format."""
    return generate_latest(registry)
