"""The floors: the least any Falcon-on-gunicorn gateway can cost, measured in the same run.

Two minimal apps are written to a temporary folder and served with the
gateway's own gunicorn settings (workers, gthread threads, keep-alive):

- ``constant``: reads the body and answers fixed bytes (what an L1 hit could
  at best cost);
- ``passthrough``: reads the body and forwards it with one pooled urllib3
  PoolManager per worker to the upstream, answering its bytes (what a
  cache miss could at best cost).

Both get the gateway's library patches (``app/patches/``): the floor's
gunicorn config calls ``app.patches.install`` as gunicorn.conf.py does (the
Date header formatted once a second, answers sent with their header block in
one write, ...), and the passthrough's pool gets
``app.patches.urllib3.prepare_pool`` as the gateway's does (each upstream
request sent with its body in one write, response headers read without the
email parser).
Those are transport, not gateway work, so the floors have them too and the
ratios price only what the gateway does on top.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchkit import answers
from benchkit.procs import LocalServer, Managed, child_env, free_port, wait_until

CONSTANT_APP = '''
import falcon

ANSWER = {answer!r}


class Constant:
    def on_post(self, req, resp):
        req.bounded_stream.read()
        resp.content_type = "application/json"
        resp.data = ANSWER


app = falcon.App()
app.add_sink(Constant().on_post, "/v1/")
'''

PASSTHROUGH_APP = '''
import falcon
import urllib3

from app.patches import urllib3 as urllib3_patches

UPSTREAM = {upstream!r}
pool = urllib3_patches.prepare_pool(
    urllib3.PoolManager(maxsize={threads}, retries=False, timeout=urllib3.Timeout(connect=5, read=120)))


def passthrough(req, resp):
    body = req.bounded_stream.read()
    up = pool.request("POST", UPSTREAM + req.path, body=body,
                      headers={{"content-type": "application/json", "accept": req.accept or "application/json"}})
    resp.status = up.status
    resp.content_type = up.headers.get("content-type", "application/json")
    resp.data = up.data


app = falcon.App()
app.add_sink(passthrough, "/v1/")
'''


# The gateway's library patches, installed as gunicorn.conf.py installs them.
FLOOR_PATCHES = """
from app import patches

patches.install(True)
"""


class FloorApp(LocalServer):
    """One floor app under gunicorn, with the same worker, thread and keep-alive settings as the gateway."""

    def __init__(self, kind: str, *, workers: int, threads: int, keepalive: int, upstream_url: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"llm-edge-bench-floor-{kind}-"))
        source = (CONSTANT_APP.format(answer=answers.openai_json()) if kind == "constant"
                  else PASSTHROUGH_APP.format(upstream=upstream_url, threads=threads))
        (self.dir / f"floor_{kind}.py").write_text(source)
        # An explicit config, or gunicorn would load the gateway's ./gunicorn.conf.py and its hooks.
        (self.dir / "gunicorn_floor.conf.py").write_text(
            f"bind = ['127.0.0.1:{self.port}']\nworkers = {workers}\nworker_class = 'gthread'\n"
            f"threads = {threads}\nkeepalive = {keepalive}\npreload_app = False\nloglevel = 'warning'\n"
            + FLOOR_PATCHES)
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.proc = Managed(f"floor-{kind}", [gunicorn, "-c", str(self.dir / "gunicorn_floor.conf.py"),
                                              "--chdir", str(self.dir), f"floor_{kind}:app"], env=child_env())

    def wait(self) -> FloorApp:
        import urllib3

        http = urllib3.PoolManager(retries=False, timeout=2)

        def up() -> bool:
            self.proc.check_alive()
            r = http.request("POST", self.url + "/v1/chat/completions", body=answers.openai_request("ping"),
                             headers={"content-type": "application/json"})
            return r.status == 200
        wait_until(up, timeout=20, what=f"floor app {self.kind}")
        return self

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
