"""The two-tier response cache: keys, L1 (per worker), L2 (Redis), coalescing, and the pipeline stage."""
