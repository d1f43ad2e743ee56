"""Metrics, logs and traces: how operators see the gateway."""
