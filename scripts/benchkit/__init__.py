"""Parts of the benchmark (scripts/bench.py): upstreams, load generators, floors, the table; and the
measurements run on their own with ``python -m benchkit.<name>`` from scripts/ (ab, instructions,
inprocess, and the in-process timings of single parts: cache, limiter, observability, resilience).

Everything here binds to 127.0.0.1 only, and every load loop ends by itself
within a fixed time.
"""
