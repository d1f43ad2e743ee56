"""Shared fixtures: the provider emulator, private Redis servers and gunicorn gateways.

Everything is real: the emulator is an HTTP server speaking the providers'
wire formats, Redis is a redis-server on a free port, and gateways are
gunicorn processes with two workers started from gunicorn.conf.py.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.support.processes import ROOT, GatewayProcess, RedisServer

OPENAI_KEY = "sk-test-openai-provider-key-0123456789"
ANTHROPIC_KEY = "sk-ant-test-anthropic-provider-key-0123456789"


def _load_emulator_module():
    """The package scripts/emulator/, imported as ``emulator`` without putting scripts/ on sys.path."""
    if "emulator" in sys.modules:
        return sys.modules["emulator"]
    package = ROOT / "scripts" / "emulator"
    spec = importlib.util.spec_from_file_location(
        "emulator", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["emulator"] = module
    spec.loader.exec_module(module)
    return module


emulator_module = _load_emulator_module()
Fault = emulator_module.Fault


@pytest.fixture(scope="session")
def emulator() -> Iterator:
    emu = emulator_module.Emulator(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY).start()
    yield emu
    emu.stop()


@pytest.fixture
def upstream(emulator):
    """The session's emulator, with faults and recordings cleared before and after the test."""
    emulator.reset()
    yield emulator
    emulator.reset()


# For gateways whose tests count upstream calls: no cache answers a repeated request instead.
UNCACHED = {"L1_CACHE_SIZE": "0", "ENABLE_L2_CACHE": "false", "CACHE_COALESCING": "false"}


def provider_env(emu) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "OPENAI_BASE_URL": emu.openai_base_url,
        "ANTHROPIC_BASE_URL": emu.anthropic_base_url,
    }


@pytest.fixture
def start_gateway(emulator) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory: start a gateway against the emulator with extra environment; stopped after the test."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None, **kw) -> GatewayProcess:
        gw = GatewayProcess({**provider_env(emulator), **(env or {})}, **kw).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def gateway(emulator) -> Iterator[GatewayProcess]:
    """One 2-worker gateway shared by a test module."""
    gw = GatewayProcess({**provider_env(emulator), "MAX_REQUEST_BYTES": "65536",
                         "REQUEST_TIMEOUT": "3", "STREAM_IDLE_TIMEOUT": "2"}).start()
    yield gw
    gw.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()
