"""Read a live /metrics page the way Prometheus does, and pick values out of it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3
from prometheus_client.parser import text_string_to_metric_families

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))


@dataclass(frozen=True)
class Scrape:
    text: str
    types: dict[str, str]  # family name -> counter, gauge, histogram...
    samples: list[tuple[str, dict[str, str], float]]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(v for n, lab, v in self.samples
                   if n == name and all(lab.get(k) == want for k, want in labels.items()))

    @property
    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def scrape(url: str) -> Scrape:
    resp = _http.request("GET", url)
    assert resp.status == 200, resp.status
    text = resp.data.decode()
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return Scrape(text, types, samples)


def settled(url: str, timeout: float = 5.0) -> Scrape:
    """A scrape taken when the gateway has nothing in flight, so every answered request is counted.

    A request is recorded just after its last byte (app/http/app.py): a
    scrape sent the moment an answer arrives can come microseconds too early.
    Only for tests whose own requests are the only ones in flight.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = scrape(url)
        if result.total("llm_edge_in_flight_requests") == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.01)
