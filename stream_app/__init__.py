"""callcenter-metrics: real-time SLA metrics for call centers."""

__version__ = "0.1.0"
