"""Grafana as code: the dashboards' builders (grafana-foundation-sdk) and the checks shared with the tests.

Regenerate the committed JSON with `python -m grafana.build` from the repository root.
"""
