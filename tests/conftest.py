"""Hypothesis on a shared 2-core machine: no deadline or speed health check (the machine's
load, not the code, decides how long an example takes); the examples themselves are unchanged."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")
