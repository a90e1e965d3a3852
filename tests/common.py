"""Helpers for unit and integration tests alike; unlike tests/support.py, this imports no Kafka
client, so unit tests can use it."""

from __future__ import annotations

import os
import shutil

import pytest

# The figures of a `queue-metrics` record (contract §5): all but its key fields and revision.
FIGURE_FIELDS = (
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "flowed_out",
    "answered_within_threshold",
    "service_level_seconds",
    "asa_seconds",
    "awt_seconds",
    "aht_seconds",
    "longest_wait_seconds",
    "service_level",
    "abandon_rate",
)

# The Debian package of each external tool the tests run (`make tools` installs them).
PACKAGES = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "chromium": "chromium",
}


def tool(name: str) -> str:
    """The tool's path; skip without it, or fail under CI, where every check must run."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (Debian package {PACKAGES[name]}: run `make tools`)"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)
