"""Observability: Prometheus metrics, health and readiness probes, request ids, start-up warnings."""
