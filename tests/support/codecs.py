"""Helpers the codec tests share."""

from __future__ import annotations

import itertools


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    """``raw`` cut at the given offsets (any order, repeats allowed), as a stream would arrive."""
    points = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(points)]
