"""scripts/add-client: a new key printed once, only its digest stored, the file's comments kept."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.config.settings import ConfigError
from app.limits.clients import parse_clients
from scripts.enroll import add_entry

ROOT = Path(__file__).resolve().parents[2]
LIMITS = ROOT / "config" / "rate-limits.yaml"
pytestmark = pytest.mark.timeout(60)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "add-client"), *args, "--rate-limits", str(LIMITS)],
                          cwd=cwd, capture_output=True, text=True, timeout=30)


def test_the_script_prints_the_key_once_and_stores_only_its_digest(tmp_path):
    path = tmp_path / "clients.yaml"
    path.write_text((ROOT / "config" / "clients.yaml").read_text())
    first = run("acme", "pro", "--file", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert first.stdout == key + "\n" and key.startswith("sk-edge-") and len(key) > 40
    assert key not in first.stderr and "shown only this once" in first.stderr
    second = run("beta", "free", "--budget-day", "250", "--budget-month", "5000", "--file", str(path), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    text = path.read_text()
    assert key not in text and second.stdout.strip() not in text
    assert text.startswith("# Client keys (CLIENTS_FILE)"), "the file's comments are kept"
    registry = parse_clients(yaml.safe_load(text), ["free", "pro", "enterprise"], "free")
    assert registry.find(key).id == "acme" and registry.find(key).tier == "pro"
    beta = registry.find(second.stdout.strip())
    assert beta.id == "beta" and beta.budgets == {"day": 250.0, "month": 5000.0}
    assert hashlib.sha256(key.encode()).hexdigest() in text


@pytest.mark.parametrize("args,fragment", [
    (("acme", "gold"), "tier 'gold' is not in RATE_LIMITS_FILE"),
    (("bad id!", "pro"), ".id must be"),
])
def test_bad_arguments_change_nothing(tmp_path, args, fragment):
    path = tmp_path / "clients.yaml"
    path.write_text("clients: []\n")
    result = run(*args, "--file", str(path), cwd=tmp_path)
    assert result.returncode == 2 and fragment in result.stderr and result.stdout == ""
    assert path.read_text() == "clients: []\n"


def test_an_existing_id_is_refused(tmp_path):
    path = tmp_path / "clients.yaml"
    assert run("acme", "pro", "--file", str(path), cwd=tmp_path).returncode == 0  # creates the file
    before = path.read_text()
    result = run("acme", "free", "--file", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr and path.read_text() == before


@pytest.mark.parametrize("text", [
    "clients:\n- id: a\n  tier: free\n  key_sha256: " + "a" * 64 + "\n",
    "clients:   # the keys\n    - id: a\n      tier: free\n      key_sha256: " + "a" * 64 + "\n",
    "clients:\n  - id: a\n    tier: free\n    key_sha256: " + "a" * 64 + "\nother: 1\n",
    "# header\nclients: [ ]  # none yet\n",
    "",
])
def test_the_entry_lands_in_the_list_whatever_its_layout(text):
    updated = add_entry(text, "new", "pro", "b" * 64, {"day": 5.0})
    data = yaml.safe_load(updated)
    assert data["clients"][-1] == {"id": "new", "tier": "pro", "key_sha256": "b" * 64, "budget_cents_per_day": 5}
    assert len(data["clients"]) == (1 if "id: a" not in text else 2)
    if "other: 1" in text:
        assert data["other"] == 1
    for comment in ("# the keys", "# header", "# none yet"):
        if comment in text:
            assert comment in updated


def test_a_file_without_a_clients_list_is_not_guessed_at():
    with pytest.raises(ConfigError, match="no top-level 'clients:'"):
        add_entry("users: []\n", "new", "pro", "b" * 64, {})


def test_the_image_can_enroll_with_only_what_dockerignore_ships(tmp_path):
    """docker/Dockerfile ships app/, config/ and scripts/enroll.py: ``python -m scripts.enroll`` works there."""
    image = tmp_path / "app"
    ignored = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "app", image / "app", ignore=ignored)
    shutil.copytree(ROOT / "config", image / "config")
    (image / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "enroll.py", image / "scripts" / "enroll.py")
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!scripts/enroll.py" in allowed and "COPY scripts/enroll.py" in (ROOT / "docker/Dockerfile").read_text()
    done = subprocess.run([sys.executable, "-m", "scripts.enroll", "acme", "pro", "--file",
                           str(image / "config" / "clients.yaml")], cwd=image, capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("sk-edge-")
