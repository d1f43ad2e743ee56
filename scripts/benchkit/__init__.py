"""Parts of the benchmark (scripts/bench.py): upstreams, load generators, floors, the table.

Everything here binds to 127.0.0.1 only, and every load loop ends by itself
within a fixed time.
"""
