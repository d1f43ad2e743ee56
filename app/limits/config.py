"""The access configuration: the clients file and the rate limit file, validated together.

The master validates both (gunicorn.conf.py) before it makes its copies of
the config files current (``app/config/snapshot.py``): a bad file stops the
first start with one line, and a SIGHUP with a bad file keeps the last good
keys and limits. Each worker then loads the validated copies once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config.settings import ConfigError, Settings
from app.config.yaml_file import load_yaml
from app.limits.clients import ClientRegistry, parse_clients
from app.limits.policy import LimitPolicy, parse_policy


@dataclass(frozen=True, slots=True)
class AccessConfig:
    clients: ClientRegistry
    policy: LimitPolicy


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
    return AccessConfig(clients, policy)


def startup_warnings(config: AccessConfig) -> list[str]:
    """What the master says at start and after each reload (it imports nothing of the metrics here)."""
    if config.clients.open:
        return [f"no clients in CLIENTS_FILE: the gateway is OPEN (development mode); every caller is "
                f"'anonymous' in tier '{config.clients.anonymous.tier}'. Add a client with scripts/add-client"]
    return []
