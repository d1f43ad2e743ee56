"""Line log handlers: each line goes out at once, whole, in one write, in order, never twice or never."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from select import PIPE_BUF
from typing import TypeVar

import orjson
import pytest

from app.observability.log_handlers import LineFileHandler, LineStreamHandler
from app.observability.logging import JsonFormatter, direct_handlers, log_fields

pytestmark = pytest.mark.timeout(30)


class Writes(io.StringIO):
    """A stream that remembers every write() it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"test.log_handlers.{name}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


class RawWrites(io.RawIOBase):
    """The system calls under a real text stream: every write() the file descriptor would get."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        self.writes.append(bytes(data))
        return len(data)


# Non-ASCII (bytes, not characters count), from 106 bytes up to exactly PIPE_BUF (line 285).
LINES = [f"{i:04d} " + "é" * (50 + i * 7 % 2000) for i in range(300)]


@pytest.mark.parametrize("line_buffering", [True, False], ids=["stderr", "file"])
def test_each_line_reaches_the_descriptor_in_one_write(line_buffering):
    """sys.stderr is line-buffered, a FileHandler's file is not: either way one whole line per system call."""
    raw = RawWrites()
    stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", line_buffering=line_buffering)
    log = logger_with(LineStreamHandler(stream), f"raw.{line_buffering}")
    for line in LINES:
        log.info(line)
    assert raw.writes == [f"{line}\n".encode() for line in LINES]
    assert max(len(w) for w in raw.writes) == PIPE_BUF  # at most PIPE_BUF: each reaches a shared pipe whole


def test_a_line_longer_than_pipe_buf_goes_alone():
    stream = Writes()
    log = logger_with(LineStreamHandler(stream), "long")
    log.info("short")
    log.info("x" * 10_000)
    log.info("after")
    assert stream.writes == ["short\n", "x" * 10_000 + "\n", "after\n"]


def test_lines_from_many_threads_are_all_written_once_and_whole():
    stream = Writes()
    handler = LineStreamHandler(stream)

    def run(t: int) -> None:
        for i in range(500):
            handler.add_line(f"{t}-{i}\n")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(stream.writes) == sorted(f"{t}-{i}\n" for t in range(8) for i in range(500))
    lines = stream.getvalue().splitlines()
    for t in range(8):  # each thread's lines in its own order
        mine = [line for line in lines if line.startswith(f"{t}-")]
        assert mine == [f"{t}-{i}" for i in range(500)]


def test_reopening_a_file_handler_sends_later_lines_to_the_new_file(tmp_path):
    """What gunicorn does on SIGUSR1: close, then _open; each line is already in the file it was written to."""
    path = tmp_path / "gw.log"
    handler = LineFileHandler(str(path), encoding="utf-8")
    log = logger_with(handler, "reopen")
    log.info("before rotation")
    assert path.read_text() == "before rotation\n", "written at once"
    path.rename(tmp_path / "gw.log.1")
    handler.acquire()
    try:
        handler.close()
        handler.stream = handler._open()
    finally:
        handler.release()
    log.info("after rotation")
    handler.add_line("added after rotation\n")
    assert (tmp_path / "gw.log.1").read_text() == "before rotation\n"
    assert path.read_text() == "after rotation\nadded after rotation\n"
    handler.close()


SCRIPT = """
import logging, os, sys
sys.path.insert(0, {root!r})
from app.observability.log_handlers import LineFileHandler
h = LineFileHandler({path!r})
h.setFormatter(logging.Formatter("%(process)d %(message)s"))
log = logging.getLogger("t"); log.addHandler(h); log.setLevel(logging.INFO)
log.info("before the fork")
pid = os.fork()
if pid == 0:
    log.info("from the child")
    os._exit(0)  # as a killed worker: nothing more is written at exit
os.waitpid(pid, 0)
log.info("from the parent")
"""


def test_a_fork_never_repeats_lines_and_a_hard_exit_loses_none(tmp_path):
    path = tmp_path / "fork.log"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", SCRIPT.format(root=root, path=str(path))], check=True, timeout=20)
    messages = [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
    assert messages == ["before the fork", "from the child", "from the parent"]


H = TypeVar("H", bound=logging.Handler)


def json_logger_with(handler: H, name: str) -> tuple[logging.Logger, H]:
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test.log_fields.{name}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, handler


def json_logger(name: str, stream: io.StringIO) -> tuple[logging.Logger, LineStreamHandler]:
    return json_logger_with(LineStreamHandler(stream), name)


FIELDS = {"request_id": "r-1", "status": 200, "cost_cents": 0.25, "error_type": None, "stream": False}


def test_log_fields_writes_what_the_logging_path_writes():
    direct, through_logging = io.StringIO(), io.StringIO()
    log, _ = json_logger("direct", direct)
    log_fields(log, logging.INFO, "request", FIELDS)
    other, _ = json_logger("ordinary", through_logging)
    other.info("request", extra={"fields": FIELDS})
    a, b = orjson.loads(direct.getvalue()), orjson.loads(through_logging.getvalue())
    assert a.pop("ts")[:16] == b.pop("ts")[:16] and a.pop("logger") != b.pop("logger")
    assert a == b == {"level": "info", "pid": os.getpid(), "msg": "request", **FIELDS}


def test_log_fields_takes_the_ordinary_path_for_any_other_handler_or_a_filter(caplog):
    stream = io.StringIO()
    log, handler = json_logger("mixed", stream)
    assert direct_handlers(log, logging.INFO) == [handler]
    log.addHandler(caplog.handler)  # not a line handler: every line goes through logging
    assert direct_handlers(log, logging.INFO) is None
    log_fields(log, logging.INFO, "request", FIELDS)
    assert [r.fields for r in caplog.records] == [FIELDS] and "r-1" in stream.getvalue()
    log.removeHandler(caplog.handler)
    log.addFilter(lambda record: False)  # a filter may drop the line: only logging can ask it
    log_fields(log, logging.INFO, "request", {"request_id": "r-2"})
    assert "r-2" not in stream.getvalue()


def test_log_fields_respects_levels():
    stream = io.StringIO()
    log, handler = json_logger("levels", stream)
    handler.setLevel(logging.WARNING)
    assert direct_handlers(log, logging.INFO) == []
    log_fields(log, logging.INFO, "request", FIELDS)
    log.setLevel(logging.ERROR)
    log_fields(log, logging.WARNING, "request", FIELDS)
    assert stream.getvalue() == ""


def test_log_fields_to_a_file_writes_the_bytes_the_logging_path_writes(tmp_path):
    """A file handler takes the encoded line on its descriptor: the same bytes as through logging, in order."""
    direct = LineFileHandler(str(tmp_path / "direct.log"), encoding="utf-8")
    ordinary = LineFileHandler(str(tmp_path / "ordinary.log"), encoding="utf-8")
    for handler in (direct, ordinary):
        handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.log_fields.file")
    log.handlers[:] = [direct]
    log.propagate = False
    log.setLevel(logging.INFO)
    fields = {**FIELDS, "model": "modèle ü", "attempts": 2}
    log.info("before")  # an emitted record, then direct lines: nothing overtakes anything
    log_fields(log, logging.INFO, "request", fields)
    log_fields(log, logging.INFO, "request", {"request_id": "r-2"})
    log.handlers[:] = [ordinary]
    log.info("before")
    log.info("request", extra={"fields": fields})
    log.info("request", extra={"fields": {"request_id": "r-2"}})
    a = [orjson.loads(line) for line in (tmp_path / "direct.log").read_bytes().splitlines()]
    b = [orjson.loads(line) for line in (tmp_path / "ordinary.log").read_bytes().splitlines()]
    for line in a + b:
        line.pop("ts")
    assert a == b and a[1] == {"level": "info", "logger": "test.log_fields.file", "pid": os.getpid(),
                               "msg": "request", **fields}
    own = direct._lines[1]  # the handler's own descriptor, on the same file as its stream's
    assert own is not None and os.path.sameopenfile(own, direct.stream.fileno())
    direct.close()
    ordinary.close()


def test_log_fields_writes_text_to_a_stream_of_another_encoding(tmp_path):
    path = tmp_path / "latin.log"
    stream = open(path, "w", encoding="latin-1")
    log, handler = json_logger("latin", stream)  # type: ignore[arg-type]
    log_fields(log, logging.INFO, "request", {"model": "modèle"})
    stream.close()
    assert handler._lines[1] is None  # not this stream's bytes: the text went through the stream
    assert orjson.loads(path.read_bytes().decode("latin-1"))["model"] == "modèle"


def json_file_logger(path, name: str) -> tuple[logging.Logger, LineFileHandler]:  # type: ignore[no-untyped-def]
    return json_logger_with(LineFileHandler(str(path), encoding="utf-8"), name)


def test_log_fields_after_a_reopen_writes_to_the_new_file(tmp_path):
    path = tmp_path / "gw.log"
    log, handler = json_file_logger(path, "reopen")
    log_fields(log, logging.INFO, "request", {"request_id": "r-1"})
    path.rename(tmp_path / "gw.log.1")
    with handler.lock:
        handler.close()
        handler.stream = handler._open()
    log_fields(log, logging.INFO, "request", {"request_id": "r-2"})
    assert [orjson.loads(x)["request_id"] for x in (tmp_path / "gw.log.1").read_bytes().splitlines()] == ["r-1"]
    assert [orjson.loads(x)["request_id"] for x in path.read_bytes().splitlines()] == ["r-2"]
    handler.close()


def test_encoded_lines_need_no_lock_and_a_reopen_meanwhile_loses_none(tmp_path):
    """The access line's write takes no lock (a thread holding it while waiting for the GIL would hold
    up every other line); lines written while gunicorn reopens the file land in the old file or the new."""
    path = tmp_path / "gw.log"
    log, handler = json_file_logger(path, "nolock")
    log_fields(log, logging.INFO, "request", {"request_id": "first"})
    done = threading.Event()
    with handler.lock:  # held by "another thread": the line still goes out
        writer = threading.Thread(target=lambda: (log_fields(log, logging.INFO, "request",
                                                             {"request_id": "locked-out"}), done.set()))
        writer.start()
        assert done.wait(5), "add_encoded waited for the handler's lock"
    writer.join()

    def write(t: int) -> None:
        for i in range(300):
            log_fields(log, logging.INFO, "request", {"request_id": f"{t}-{i}"})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for n in range(5):  # reopens while they write, as SIGUSR1 does
        path.rename(tmp_path / f"gw.log.{n}")
        with handler.lock:
            handler.close()
            handler.stream = handler._open()
    for thread in threads:
        thread.join()
    ids = [orjson.loads(x)["request_id"] for f in sorted(tmp_path.iterdir()) for x in f.read_bytes().splitlines()]
    assert sorted(ids) == sorted(["first", "locked-out"] + [f"{t}-{i}" for t in range(4) for i in range(300)])
    handler.close()
