"""gunicorn answers with its header block and the first body bytes in one write.

gunicorn's ``Response.write`` sends the header block with one ``sendall`` and
the body with another: two system calls and two TCP segments for every
answer, which the client then reads twice. Every whole answer of the gateway
is a single body chunk (Falcon sets its length), so here the first write
sends the head and that chunk together (framed as a chunk when the answer is
chunked, as a stream's first event is). Whatever else gunicorn does in
``write`` (a body the method or status forbids, a body longer than its
Content-Length, an empty chunk, HTTP/2) still goes through gunicorn's own
code unchanged.

Installed by ``app/gunicorn_trims.py`` in the master, so every worker inherits it. Written
against gunicorn 27 (``requirements.txt`` pins it); ``install`` declines, and
gunicorn writes as before, when the ``Response`` it finds lacks what this relies on.
"""

from __future__ import annotations

from typing import Any

from gunicorn.http import wsgi

_GUNICORN_WRITE = wsgi.Response.write
# What ``write`` reads of a response: gunicorn 27's methods and the attributes its constructor sets.
_NEEDS = ("default_headers", "write", "headers_sent", "_omits_body", "response_length", "sent", "chunked",
          "headers", "sock")


def write(self: Any, arg: Any) -> None:
    """``Response.write``: the first chunk of a plain HTTP/1 answer goes out with the header block."""
    if (self.headers_sent or type(self) is not wsgi.Response or not isinstance(arg, bytes) or not arg
            or self._omits_body
            or (self.response_length is not None and len(arg) > self.response_length)):
        _GUNICORN_WRITE(self, arg)
        return
    lines = self.default_headers()
    lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
    head = ("".join(lines) + "\r\n").encode("latin-1")
    body = b"%X\r\n%b\r\n" % (len(arg), arg) if self.chunked else arg
    self.sent += len(arg)  # as gunicorn counts the body before writing it
    self.sock.sendall(head + body)
    self.headers_sent = True  # as gunicorn marks the head sent once its write returned


def install() -> bool:
    """Use ``write`` for gunicorn's responses in this process; ``False`` when this gunicorn is not the one it knows."""
    response = wsgi.Response
    try:
        probe = response(None, None, None)
    except Exception:  # a constructor we do not know: leave gunicorn alone
        return False
    if not all(hasattr(probe, name) for name in _NEEDS):
        return False
    response.write = write
    return True
