"""The access configuration (clients file + rate limit file), loaded once and reloaded on SIGHUP.

On SIGHUP gunicorn re-executes gunicorn.conf.py in the master and replaces
every worker. The master therefore loads and validates the files
(``refresh``) and the workers, forked from it, take the master's copy
(``current``) instead of reading the files again. That makes a bad edit safe:
at start it stops the gateway with one clear line, but on a reload the master
keeps the previous copy and reports the error (``reload_error``), so the new
workers keep serving the last good keys and limits instead of failing to boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.limits.clients import ClientRegistry, parse_clients
from app.limits.policy import LimitPolicy, parse_policy
from app.routing import load_yaml
from app.settings import ConfigError, Settings


@dataclass(frozen=True, slots=True)
class AccessConfig:
    clients: ClientRegistry
    policy: LimitPolicy
    source: tuple[str, str, str | None]  # (clients file, rate limit file, ANONYMOUS_TIER) it was loaded from


def _source(settings: Settings) -> tuple[str, str, str | None]:
    return (settings.clients_file, settings.rate_limits_file, settings.anonymous_tier)


def _read(path: str, setting: str) -> dict:
    if not Path(path).is_file():
        raise ConfigError(f"{setting}: {path!r} does not exist")
    return load_yaml(path, setting)


def load_access_config(settings: Settings) -> AccessConfig:
    """Both files, validated together (a client's tier must exist in the rate limit file)."""
    policy = parse_policy(_read(settings.rate_limits_file, "RATE_LIMITS_FILE"))
    # Development mode is for developing: the open gateway's one caller gets the most generous tier.
    anonymous = settings.anonymous_tier or max(policy.tiers.values(), key=lambda t: t.requests.per_second).name
    clients = parse_clients(_read(settings.clients_file, "CLIENTS_FILE"), policy.tiers, anonymous)
    return AccessConfig(clients, policy, _source(settings))


_current: AccessConfig | None = None
reload_error: str | None = None


def refresh(settings: Settings) -> AccessConfig:
    """Load the files in the master: at start an error raises; on reload it keeps the last good copy."""
    global _current, reload_error
    try:
        config = load_access_config(settings)
    except ConfigError as exc:
        if _current is None or _current.source != _source(settings):
            raise
        reload_error = str(exc)
        return _current
    _current, reload_error = config, None
    return config


def current(settings: Settings) -> AccessConfig:
    """The master's copy when this process was forked from one with the same files, else the files."""
    if _current is not None and _current.source == _source(settings):
        return _current
    return load_access_config(settings)


def startup_warnings(config: AccessConfig) -> list[str]:
    """What the master says at start and after each reload (it imports nothing of the metrics here)."""
    if config.clients.open:
        return [f"no clients in CLIENTS_FILE: the gateway is OPEN (development mode); every caller is "
                f"'anonymous' in tier '{config.clients.anonymous.tier}'. Add a client with scripts/add-client"]
    return []
