"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free port.

It scrapes the given targets every second under the job name the shipped
rules and dashboards select (``llm-edge-agent``), loads the given rule files,
and answers PromQL through its HTTP API.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson
import urllib3
import yaml

from tests.support.processes import free_port, wait_until

JOB = "llm-edge-agent"
_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))


class PrometheusServer:
    def __init__(self, targets: list[str], rule_files: list[Path]) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="llm-edge-promtest-"))
        self.targets = targets
        self.rule_files = rule_files
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run scripts/install-test-tools.sh")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p.resolve()) for p in self.rule_files],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": self.targets}]}],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(self._ready, timeout=30, what="prometheus /-/ready")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"prometheus did not start:\n{self.log_path.read_text()}") from None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()}")
        return _http.request("GET", f"{self.url}/-/ready").status == 200

    def api(self, path: str, **params: str) -> Any:
        resp = _http.request("GET", f"{self.url}/api/v1/{path}", fields=params)
        body = orjson.loads(resp.data)
        if body.get("status") != "success":
            raise AssertionError(f"prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector: [{"metric": {...}, "value": [ts, "1.5"]}, ...]."""
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
