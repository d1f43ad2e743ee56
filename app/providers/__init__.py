"""Talking to providers: pooled HTTP and the per-format wire details."""
