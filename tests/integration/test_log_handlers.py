"""Batched log handlers: lines go out together, whole, in order, soon, and never twice or never."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import time

import orjson
import pytest

from app.observability.log_handlers import PIPE_BUF, BatchedFileHandler, BatchedStreamHandler
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


def test_info_lines_wait_and_a_warning_takes_them_all_out_in_order():
    stream = Writes()
    log = logger_with(BatchedStreamHandler(stream, flush_interval=60), "order")
    for i in range(5):
        log.info("line %d", i)
    assert stream.getvalue() == "", "info lines wait for the batch"
    log.warning("trouble")
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(5)] + ["trouble"]
    assert len(stream.writes) == 1, "one write for the whole batch"


def test_writes_hold_whole_lines_of_at_most_pipe_buf_bytes():
    stream = Writes()
    log = logger_with(BatchedStreamHandler(stream, flush_interval=60), "chunks")
    lines = [f"{i:04d} " + "é" * (50 + i % 200) for i in range(300)]  # non-ASCII: bytes, not characters
    for line in lines:
        log.info(line)
    log.handlers[0].flush()
    assert stream.getvalue().splitlines() == lines
    assert len(stream.writes) > 10
    for chunk in stream.writes:
        assert chunk.endswith("\n") and len(chunk.encode()) <= PIPE_BUF


def test_a_line_longer_than_pipe_buf_goes_alone():
    stream = Writes()
    log = logger_with(BatchedStreamHandler(stream, flush_interval=60), "long")
    log.info("short")
    log.info("x" * 10_000)
    log.handlers[0].flush()
    assert stream.writes == ["short\n", "x" * 10_000 + "\n"]


def test_lines_from_many_threads_are_all_written_once():
    """Lines are queued without the handler's lock; a batch being written must not lose one added meanwhile."""
    stream = Writes()
    handler = BatchedStreamHandler(stream, flush_interval=0.001)

    def run(t: int) -> None:
        for i in range(500):
            handler.add_line(f"{t}-{i}\n", logging.INFO)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert sorted(lines) == sorted(f"{t}-{i}" for t in range(8) for i in range(500))
    for t in range(8):  # each thread's lines in its own order
        mine = [line for line in lines if line.startswith(f"{t}-")]
        assert mine == [f"{t}-{i}" for i in range(500)]


def test_an_idle_logger_still_writes_within_the_interval():
    stream = Writes()
    log = logger_with(BatchedStreamHandler(stream, flush_interval=0.05), "idle")
    log.info("alone")
    assert stream.getvalue() == ""
    deadline = time.monotonic() + 2
    while "alone" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "alone\n", "the flush thread wrote it without another line arriving"


def test_zero_interval_writes_every_line_at_once():
    stream = Writes()
    log = logger_with(BatchedStreamHandler(stream, flush_interval=0), "zero")
    log.info("a")
    log.info("b")
    assert stream.writes == ["a\n", "b\n"]


def test_closing_a_file_handler_writes_what_is_pending_and_reopens(tmp_path):
    """What gunicorn does on SIGUSR1: close (pending lines go to the old file), then _open."""
    path = tmp_path / "gw.log"
    handler = BatchedFileHandler(str(path), encoding="utf-8", flush_interval=60)
    log = logger_with(handler, "reopen")
    log.info("before rotation")
    path.rename(tmp_path / "gw.log.1")
    handler.acquire()
    try:
        handler.close()
        handler.stream = handler._open()
    finally:
        handler.release()
    log.info("after rotation")
    handler.flush()
    assert (tmp_path / "gw.log.1").read_text() == "before rotation\n"
    assert path.read_text() == "after rotation\n"
    handler.close()


SCRIPT = """
import logging, os, sys
sys.path.insert(0, {root!r})
from app.observability.log_handlers import BatchedFileHandler
h = BatchedFileHandler({path!r}, flush_interval=60)
h.setFormatter(logging.Formatter("%(process)d %(message)s"))
log = logging.getLogger("t"); log.addHandler(h); log.setLevel(logging.INFO)
log.info("pending before fork")
pid = os.fork()
if pid == 0:
    log.info("from the child")
    sys.exit(0)  # a normal exit: logging.shutdown writes what is pending
os.waitpid(pid, 0)
log.info("from the parent")
"""


def test_a_fork_never_repeats_pending_lines_and_exit_writes_the_rest(tmp_path):
    path = tmp_path / "fork.log"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", SCRIPT.format(root=root, path=str(path))], check=True, timeout=20)
    messages = [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
    assert sorted(messages) == ["from the child", "from the parent", "pending before fork"]


def json_logger(name: str, stream: io.StringIO) -> tuple[logging.Logger, BatchedStreamHandler]:
    handler = BatchedStreamHandler(stream, flush_interval=0)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test.log_fields.{name}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, handler


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
    log.addHandler(caplog.handler)  # not a batching handler: every line goes through logging
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
