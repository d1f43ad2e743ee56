"""benchkit.growth: the files it generates load as the gateway loads them, and ``--quick`` prints every row.

Nothing here judges speed: the quick run uses tiny points and counts and
checks only that each table has a row per point with every cell filled.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from app.config.settings import Settings
from app.limits.clients import key_digest, parse_clients
from app.providers.routing import Router
from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import gateway as gw
from benchkit import growth, nginx


@pytest.fixture
def config():  # type: ignore[no-untyped-def]
    made = gw.BenchConfig(None)
    yield made
    made.cleanup()


def test_the_generated_models_file_routes_the_model_the_requests_name(config) -> None:  # type: ignore[no-untyped-def]
    model = growth.configure(config, "models", 100)
    settings = Settings.from_env({**config.env(), "OPENAI_API_KEY": "sk-test"})
    router = Router.from_settings(settings, {})
    assert len(router.models) == 100
    (target,) = router.resolve(model)
    assert (target.provider.name, target.model) == ("openai", "gpt-4o-mini")


def test_the_generated_clients_file_holds_the_benchmark_key_among_the_others(config) -> None:  # type: ignore[no-untyped-def]
    assert growth.configure(config, "clients", 50) == "gpt-4o-mini"
    data = yaml.safe_load((config.dir / "clients.yaml").read_text())
    registry = parse_clients(data, ["free", "pro", "enterprise"], "free")
    assert len(registry.clients) == 50
    found = registry.find(gw.CLIENT_KEY)
    assert found is not None and found.digest == key_digest(gw.CLIENT_KEY)


def test_bodies_are_unique_per_tag_and_of_the_prompt_size() -> None:
    bodies = growth.Bodies.of("gpt-4o-mini", 10_000)
    a, b = bodies.one("x 1"), bodies.one("x 2")
    assert a != b
    for body in (a, b):
        content = yaml.safe_load(body)["messages"][-1]["content"]  # JSON is YAML
        assert len(content) == 10_000


def test_big_bodies_get_fewer_requests() -> None:
    assert growth.scaled(400, 1_000, 8) == 400
    assert growth.scaled(400, 1_000_000, 8) == 8


@pytest.mark.timeout(300)
@pytest.mark.skipif(not nginx.available(), reason="needs nginx (scripts/install-test-tools.sh installs it)")
def test_quick_prints_a_full_row_for_every_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchkit.growth", "--quick"], cwd=ROOT / "scripts",
                          capture_output=True, text=True, timeout=280,
                          env={**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "load average at start:" in out and "command:" in out
    for title, points in [("Body size", growth.QUICK_POINTS["body"]), ("L1 entries", growth.QUICK_POINTS["l1"]),
                          ("Models in MODELS_FILE", growth.QUICK_POINTS["models"]),
                          ("Client keys in CLIENTS_FILE", growth.QUICK_POINTS["clients"])]:
        section = out.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert len(rows) == len(points), section
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert len(cells) == 5 and all(cells), row
            assert all(float(c.replace(",", "")) > 0 for c in cells[1:]), row
