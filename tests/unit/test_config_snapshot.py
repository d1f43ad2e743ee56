"""ConfigSnapshot: workers get the master's validated copies; a broken reload keeps the last good ones."""

from __future__ import annotations

import pytest

from app.config import snapshot
from app.config.settings import ConfigError
from app.config.snapshot import ConfigSnapshot

pytestmark = pytest.mark.timeout(10)


def test_stage_promote_and_fall_back(tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text("models: {a: {provider: openai}}\n")
    snap = ConfigSnapshot(tmp_path / "snap")
    missing = str(tmp_path / "missing.yaml")
    environ = {"MODELS_FILE": str(models), "CLIENTS_FILE": missing, "PRICING_FILE": missing,
               "RATE_LIMITS_FILE": missing}
    assert not snap.has_current

    staged = snap.stage(environ)
    assert set(staged) == {"MODELS_FILE"}  # a missing file is left to its loader's default
    current = snap.promote(staged)
    assert snap.has_current and open(current["MODELS_FILE"]).read() == models.read_text()

    models.write_text("models: [broken\n")  # the user edits the file badly, then sends SIGHUP
    staged = snap.stage(environ)
    assert open(staged["MODELS_FILE"]).read() == "models: [broken\n"
    # (validation fails here; the master keeps the last good copies)
    assert snap.current_overrides() == current
    assert open(current["MODELS_FILE"]).read() == "models: {a: {provider: openai}}\n"
    assert snap.explain(f"MODELS_FILE: cannot read '{staged['MODELS_FILE']}'") == \
        f"MODELS_FILE: cannot read '{models}'"

    models.write_text("models: {b: {provider: openai}}\n")  # fixed; the next SIGHUP takes it
    current = snap.promote(snap.stage(environ))
    assert "b:" in open(current["MODELS_FILE"]).read()
    snap.remove()
    assert not (tmp_path / "snap").exists()


def test_one_private_folder_per_master_found_again_on_reload(monkeypatch):
    monkeypatch.setattr(snapshot, "_owner", {})
    first = ConfigSnapshot.for_this_master()
    try:
        assert first.root.is_dir() and (first.root.stat().st_mode & 0o777) == 0o700
        assert ConfigSnapshot.for_this_master().root == first.root  # gunicorn.conf.py run again on SIGHUP
        monkeypatch.setitem(snapshot._owner, "pid", "1")  # state of another master (before a fork)
        other = ConfigSnapshot.for_this_master()
        assert other.root != first.root
        other.remove()
    finally:
        first.remove()


def test_an_unreadable_file_is_a_config_error(tmp_path, monkeypatch):
    models = tmp_path / "models.yaml"
    models.write_text("models: {}\n")

    def denied(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("app.config.snapshot.shutil.copyfile", denied)
    with pytest.raises(ConfigError, match=r"MODELS_FILE: cannot read .* \(Permission denied\)"):
        ConfigSnapshot(tmp_path / "snap").stage({"MODELS_FILE": str(models)})
