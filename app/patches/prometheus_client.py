"""prometheus_client, patched: a shorter multiprocess value update, and a collector that skips a file being made.

What it changes:

- ``prometheus_client.values.ValueClass``, in multiprocess mode, becomes the
  class ``lean_multiprocess_value`` makes: the same ``<type>_<pid>.db`` files
  written through prometheus_client's own ``MmapedDict`` (which also grows a
  full file), the same keys (``mmap_key``), the same 16 bytes per value, each
  double copied whole into the map (``set`` by one slice assignment, as
  prometheus_client does; ``inc`` packs into the map, its timestamp half
  always 0.0) so that a reader never sees a half-written value. Swapped before any metric value exists (by
  ``install`` in the master, or by app.observability.metrics before it defines
  its metrics), never after: two classes would write one file through two maps.
- The master's /metrics collector (``collector``) is ``MultiProcessCollector``
  except that ``collect`` skips a worker's file still being created.

Why the value: every request updates seven to a dozen values (request count,
duration histogram sum and bucket, in-flight up and down, cache and cost
series), and prometheus_client's ``MmapedValue.inc`` spends most of its time
around the write rather than on it: a fork check per update, then
``MmapedDict.write_value`` looks the key's position up and calls a helper that
packs the two doubles. Here the position is looked up once, when the value is
(re)attached to its file, and a fork is noticed by ``os.register_at_fork``
instead of a check per update, so an update is the lock, the sum and one slice
assignment into the mmap. Measured gain (when it was made):
"an update 0.9-1.3 → 0.4-0.7 µs; L1 hit under load 1.14x (median of 8 paired
rounds), CPU 442 → 388 µs per hit."

Why the collector: a worker creates its files on its first metric update, and
between opening a file and sizing it the file is empty: the stock collector
then fails the whole scrape (``struct.error``, a 500 and a traceback on
stderr). A worker starts whenever gunicorn spawns one, so a scrape can meet
that moment in production. An empty file holds no values yet, so skipping it
loses nothing; a file only grows, so a file seen sized stays readable. (A fix,
not a speed-up; with patches off the stock collector is used.)

Relies on ``MmapedDict``'s ``_positions`` and ``_m``, on ``values._multi_process_cleanups``
and on ``MultiProcessCollector``'s ``_path`` and ``merge``;
tests/integration/test_metric_values.py checks the files against ``MultiProcessCollector``.
"""

from __future__ import annotations

import glob
import os
import struct
import threading
from typing import Any

from prometheus_client import multiprocess, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

WRITTEN_FOR = ("prometheus-client", "0.26.0")

_TWO_DOUBLES = struct.Struct("dd")
_PACK_TWO_DOUBLES = _TWO_DOUBLES.pack
_PACK_TWO_DOUBLES_INTO = _TWO_DOUBLES.pack_into

# enabled: set by install() / uninstall(); lean: this process's lean class, once made; stock: the class it replaced.
_state: dict[str, Any] = {"enabled": True, "lean": None, "stock": None}


def lean_multiprocess_value() -> type:
    """A ValueClass for ``prometheus_client.values.ValueClass``, with its own files and lock.

    One lock per process serializes updates as prometheus_client's does: ``+=`` on a float is
    not atomic across threads, and a new key may grow (and remap) the file.
    """
    files: dict[str, MmapedDict] = {}
    live: list[LeanMmapedValue] = []
    lock = threading.Lock()

    def close_files() -> None:
        for f in files.values():
            f.close()
        files.clear()

    def cleanup() -> None:  # prometheus_client.values.close_all_multiprocess_files
        close_files()
        live.clear()

    def after_fork() -> None:
        """In a forked child: a fresh lock, its own files (named by its pid), the values read from them.

        Closing the inherited files only unmaps and closes the child's copies; the parent's stay.
        """
        nonlocal lock
        lock = threading.Lock()  # another thread of the parent may have held it at the fork
        close_files()
        for value in live:
            value._attach()

    class LeanMmapedValue:
        """A float in this process's mmapped file for its metric type."""

        _multiprocess = True
        live_values = live  # the values made so far (the class stays once there are any)
        __slots__ = ("_file", "_key", "_params", "_pos", "_value")

        def __init__(self, typ: str, metric_name: str, name: str, labelnames: Any, labelvalues: Any,
                     help_text: str, multiprocess_mode: str = "", **kwargs: Any) -> None:
            self._params = typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode
            with lock:
                self._attach()
                live.append(self)

        def _attach(self) -> None:
            typ, metric_name, name, labelnames, labelvalues, help_text, mode = self._params
            prefix = f"{typ}_{mode}" if typ == "gauge" else typ
            file = files.get(prefix)
            if file is None:
                directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
                file = files[prefix] = MmapedDict(os.path.join(directory, f"{prefix}_{os.getpid()}.db"))
            self._file = file
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            self._value = file.read_value(self._key)[0]  # creates the entry when new
            self._pos = file._positions[self._key]

        def inc(self, amount: float) -> None:
            # Packed straight into the map (no bytes object, no slice): the timestamp half is always 0.0 for
            # an inc, so only the value's 8 bytes change, in one copy, as with a slice assignment.
            with lock:
                self._value += amount
                _PACK_TWO_DOUBLES_INTO(self._file._m, self._pos, self._value, 0.0)

        def inc_with(self, amount: float, other: LeanMmapedValue, other_amount: float) -> None:
            """``inc(amount)`` and ``other.inc(other_amount)`` under one hold of the lock: a histogram's sum and
            its bucket (app.observability.metrics.observer), which a scrape then sees together."""
            with lock:
                self._value += amount
                _PACK_TWO_DOUBLES_INTO(self._file._m, self._pos, self._value, 0.0)
                other._value += other_amount
                _PACK_TWO_DOUBLES_INTO(other._file._m, other._pos, other._value, 0.0)

        @staticmethod
        def inc_each(updates: tuple[tuple[LeanMmapedValue, float], ...]) -> None:
            """Each value's ``inc`` by its amount, in order, under one hold of the lock: a request's end
            (app.observability.metrics.request_ended), one lock instead of three."""
            with lock:
                for value, amount in updates:
                    value._value += amount
                    _PACK_TWO_DOUBLES_INTO(value._file._m, value._pos, value._value, 0.0)

        def set(self, value: float, timestamp: float | None = None) -> None:
            with lock:
                self._value = value
                pos = self._pos
                self._file._m[pos:pos + 16] = _PACK_TWO_DOUBLES(value, timestamp or 0.0)

        def set_exemplar(self, exemplar: Any) -> None:
            return  # prometheus_client keeps no exemplars in multiprocess mode either

        def get(self) -> float:
            with lock:
                return self._value

        def get_exemplar(self) -> None:
            return None

    values._multi_process_cleanups.append(cleanup)
    os.register_at_fork(after_in_child=after_fork)
    return LeanMmapedValue


def use_lean_values() -> bool:
    """The lean class as ``values.ValueClass`` in multiprocess mode, unless patches are off; ``False`` when it
    is not in force (patches off, single-process mode, or this process already wrote values with another class).

    Call it before any metric exists: app.observability.metrics does, before it defines its metrics.
    """
    current = values.ValueClass
    if current is _state["lean"] and current is not None:
        return True
    if not _state["enabled"] or not getattr(current, "_multiprocess", False):
        return False
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if glob.glob(os.path.join(glob.escape(directory), f"*_{os.getpid()}.db")):
        return False  # values of this process already live in files through ``current``: it must stay
    if _state["lean"] is None:
        _state["lean"] = lean_multiprocess_value()
    _state["stock"] = current
    values.ValueClass = _state["lean"]
    return True


def _has_header(path: str) -> bool:
    """A worker's file past its creation: prometheus_client sizes a new file right after opening it."""
    try:
        return os.path.getsize(path) >= 8
    except FileNotFoundError:
        return False


class WorkerFilesCollector(multiprocess.MultiProcessCollector):
    """``MultiProcessCollector``, except that it skips a file still being created."""

    def collect(self):  # type: ignore[no-untyped-def]
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _has_header(f)]
        return self.merge(files, accumulate=True)


def collector(registry: Any, path: str | None = None) -> multiprocess.MultiProcessCollector:
    """The master's collector of the workers' files, registered in ``registry``: ``WorkerFilesCollector``,
    or prometheus_client's own when patches are off."""
    cls = WorkerFilesCollector if _state["enabled"] else multiprocess.MultiProcessCollector
    return cls(registry, path)


def install() -> bool:
    """The lean values (in multiprocess mode) and the collector; ``False`` when the values could not be swapped
    because this process already wrote values with prometheus_client's class."""
    _state["enabled"] = True
    return use_lean_values() or not getattr(values.ValueClass, "_multiprocess", False)


def uninstall() -> None:
    """prometheus_client's own value class and collector again; the lean class stays if values were made with it."""
    _state["enabled"] = False
    lean = _state["lean"]
    if lean is not None and values.ValueClass is lean and not lean.live_values:
        values.ValueClass = _state["stock"]
