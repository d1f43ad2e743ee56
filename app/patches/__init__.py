"""Every patch of a library's internals, in one package: one module per library, one switch for all.

- ``gunicorn``: each answer's header block sent with its first body chunk; the Date text cached per second.
- ``gunicorn_connections``: lingering closes off the worker's event loop, a deadline for request heads and
  TLS handshakes, no stray answer after a framing error (correctness fixes, not speed: with the switch off,
  idle, lingering and slowloris clients can stall a node again).
- ``http_client``: providers' response headers parsed without the email package.
- ``urllib3``: each upstream request's head sent with its body (per pool: ``urllib3.prepare_pool``); streamed
  bodies read below urllib3 (``stream_reader``: chunks decoded from the socket's buffer, a sized body closed
  at its end), with the wait for each read kept by the kernel on a plain socket (``kernel_receive_timeout``).
- ``prometheus_client``: the lean multiprocess metric value; a collector that skips a file being made.
- ``logging``: log records without the caller's file and line or thread names.

Each module says what it changes, why, and the measured gain that pays for it,
and declares the exact library version it was written against (``WRITTEN_FOR``;
tests/unit/test_patch_versions.py compares it with what is installed and with
requirements.txt).

``install(enabled)`` is called once by gunicorn.conf.py in the master, before the
fork, with ``Settings.patches_enabled`` (``LLM_EDGE_PATCHES``, default true), and
by the benchmark's harnesses; every worker inherits the result. With ``False`` no
library object is changed (and any earlier change is undone), and the per-use
steps (``urllib3.prepare_pool``, ``prometheus_client.use_lean_values`` and
``.collector``) give library defaults. Before any ``install`` the per-use steps
apply the patches, as the default setting does.

This package imports only libraries, never the rest of ``app``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The modules, by library; imported when installed, so that importing this package imports no library
# (prometheus_client must not be imported before gunicorn.conf.py has chosen its multiprocess folder).
MODULES = ("gunicorn", "gunicorn_connections", "http_client", "urllib3", "prometheus_client", "logging")


def module(name: str) -> ModuleType:
    """``app.patches.<name>``."""
    return importlib.import_module(f"{__name__}.{name}")


def install(enabled: bool) -> dict[str, bool]:
    """All patches on (``enabled``) or all off, idempotent; for each module, whether its patch is in force.

    A ``False`` with ``enabled`` means that module declined: the library is not the one it was written for
    (or, for prometheus_client, values already existed), so that library runs as shipped.
    """
    in_force = {}
    for name in MODULES:
        patch = module(name)
        if enabled:
            in_force[name] = patch.install()
        else:
            patch.uninstall()
            in_force[name] = False
    return in_force
