"""The config files the master validated, copied for its workers, so SIGHUP can never load a broken one.

On SIGHUP gunicorn re-runs gunicorn.conf.py in the master, then starts new
workers that read the config files themselves. A typo in models.yaml used to
stop the master (the config check exits) or, past it, make every new worker
fail to boot, which halts gunicorn: one bad edit took the gateway down.

So the master copies each YAML file named by a ``*_FILE`` setting into a
private folder, validates the copies, and only then makes them current; the
workers are pointed at the current copies (gunicorn ``raw_env``, which
gunicorn resets before each reload so the user's own paths are read again).
A reload whose files do not validate keeps the last good copies: the error is
logged, the old configuration keeps serving, and the next SIGHUP tries again.
Workers therefore load exactly what the master checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from app.config.settings import ConfigError, config_file_defaults, read_setting

DEFAULTS = config_file_defaults()  # MODELS_FILE, PRICING_FILE, ... and their default paths, from the table
CONFIG_FILES = tuple(DEFAULTS)

# The master's folder, so a reload finds it again: gunicorn re-runs gunicorn.conf.py on SIGHUP, but this
# module stays imported. Keyed by pid: a new master (a USR2 re-exec, a fork) makes its own.
_owner: dict[str, str] = {}


class ConfigSnapshot:
    """``stage`` copies the files, ``promote`` makes the staged copies current; one private folder per master."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.staged = self.root / "staged"
        self.current = self.root / "current"
        self._sources: dict[str, str] = {}  # staged copy -> the user's file, for messages

    @classmethod
    def for_this_master(cls) -> ConfigSnapshot:
        """The folder this master made at start (found again on SIGHUP), or a new private one (mode 0700)."""
        pid = str(os.getpid())
        folder = _owner.get("folder", "")
        if _owner.get("pid") != pid or not os.path.isdir(folder):
            folder = tempfile.mkdtemp(prefix="llm-edge-config-")
            _owner.update(pid=pid, folder=folder)
        return cls(folder)

    @property
    def has_current(self) -> bool:
        """Whether an earlier load of this master validated (so this one is a reload)."""
        return (self.current / ".valid").exists()

    def stage(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Copy the config files as they are now; the environment overrides that point at the copies."""
        shutil.rmtree(self.staged, ignore_errors=True)
        self.staged.mkdir(parents=True, exist_ok=True)
        overrides = {}
        for name in CONFIG_FILES:
            source = Path(read_setting(environ, name))
            if source.is_file():
                copy = self.staged / f"{name.lower()}{source.suffix}"
                try:
                    shutil.copyfile(source, copy)
                except OSError as exc:
                    raise ConfigError(f"{name}: cannot read {str(source)!r} ({exc.strerror})") from None
                overrides[name] = str(copy)
                self._sources[str(copy)] = str(source)
        return overrides

    def explain(self, message: str) -> str:
        """``message`` naming the user's files instead of the staged copies."""
        for copy, source in self._sources.items():
            message = message.replace(copy, source)
        return message

    def promote(self, staged: Mapping[str, str]) -> dict[str, str]:
        """Make the staged copies current (after they validated); overrides that point at them."""
        self.current.mkdir(parents=True, exist_ok=True)
        for stale in self.current.iterdir():
            stale.unlink()
        overrides = {}
        for name, path in staged.items():
            target = self.current / Path(path).name
            os.replace(path, target)
            overrides[name] = str(target)
        (self.current / ".valid").write_text(",".join(overrides))
        return overrides

    def current_overrides(self) -> dict[str, str]:
        """The overrides of the last good configuration."""
        names = (self.current / ".valid").read_text().split(",")
        return {name: str(next(self.current.glob(f"{name.lower()}.*"))) for name in names if name}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
