"""The metrics folder is private per gateway instance, empty at start, and abandoned ones are cleaned.

Each "master" here is a real subprocess calling ``prepare_dir`` exactly as
gunicorn.conf.py does; killing one with SIGKILL leaves its folder behind the
way a crashed gateway would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(30)

MASTER = """
import os, sys
from app.observability import multiproc
path = multiproc.prepare_dir()
assert multiproc.prepare_dir() == path  # gunicorn re-reads its config on SIGHUP: same folder, not wiped
assert os.listdir(path) == [], os.listdir(path)
assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
open(os.path.join(path, "counter_123.db"), "wb").close()
print(path, flush=True)
sys.stdin.readline()
multiproc.remove_dir()
"""


class Master:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", MASTER], cwd=ROOT, env={**os.environ, **env},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.dir = Path(self.proc.stdout.readline().strip())
        assert self.dir.is_dir(), self.proc.wait(5)

    def exit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(5) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


def clean_env(base: Path | None = None, tmp: Path | None = None) -> dict[str, str]:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(base) if base else "", "LLM_EDGE_METRICS_PARENT": ""}
    if tmp:
        env["TMPDIR"] = str(tmp)
    return env


def test_two_gateways_sharing_a_parent_get_their_own_folders(tmp_path) -> None:
    a = Master(clean_env(tmp_path))
    b = Master(clean_env(tmp_path))
    try:
        assert a.dir != b.dir and a.dir.parent == b.dir.parent == tmp_path
        assert (a.dir / "counter_123.db").exists()  # b's start did not wipe a's files
    finally:
        a.exit()
        b.exit()
    assert not a.dir.exists() and not b.dir.exists()  # each removes its own folder at exit


def test_a_crashed_gateways_folder_is_removed_at_the_next_start_a_live_one_is_not(tmp_path) -> None:
    crashed = Master(clean_env(tmp_path))
    crashed.kill()
    assert crashed.dir.exists()
    live = Master(clean_env(tmp_path))
    try:
        nxt = Master(clean_env(tmp_path))
        assert not crashed.dir.exists()
        assert live.dir.exists() and (live.dir / "counter_123.db").exists()
        nxt.exit()
    finally:
        live.exit()


def test_without_a_setting_the_folder_goes_in_the_temp_folder(tmp_path) -> None:
    m = Master(clean_env(tmp=tmp_path))
    try:
        assert m.dir.parent == tmp_path and m.dir.name.startswith("llm-edge-multiproc-")
    finally:
        m.exit()


def test_other_folders_in_the_parent_are_left_alone(tmp_path) -> None:
    (tmp_path / "llm-edge-metrics-old").mkdir()  # an older gateway's layout: not ours to judge
    (tmp_path / "unrelated").mkdir()
    Master(clean_env(tmp_path)).exit()
    assert (tmp_path / "llm-edge-metrics-old").is_dir() and (tmp_path / "unrelated").is_dir()
