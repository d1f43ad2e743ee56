"""The architecture as import rules: pyproject.toml's import-linter contract holds and covers every package.

Each layer may import only the layers below it, so no import circle can form between
packages; a new package of ``app`` must be given its place in the contract.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_the_layer_contract_holds() -> None:
    # In its own process: import-linter configures logging, which would leak into other tests.
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_module_of_app_has_a_layer() -> None:
    layered = set(_layers())
    top_level = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    packages = {f"app.{p.parent.name}" for p in (ROOT / "app").glob("*/__init__.py")}
    assert top_level | packages <= layered, f"not in the layer contract: {sorted((top_level | packages) - layered)}"
