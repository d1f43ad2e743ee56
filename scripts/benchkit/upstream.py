"""The benchmark's upstreams: the fast one (nginx, else the project's emulator) and the slow drip server."""

from __future__ import annotations

import json
import sys

import urllib3

from benchkit import answers
from benchkit.procs import ROOT, Managed, child_env, pinned

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=15))


class LocalUpstream:
    """A provider stand-in at ``url`` that speaks both wire formats; ``proc`` is its process."""

    kind = ""
    url = ""
    proc: Managed

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"  # the OpenAI base URL includes /v1, as in the OpenAI SDK

    @property
    def anthropic_base_url(self) -> str:
        return self.url


class EmulatorUpstream(LocalUpstream):
    """The project's emulator (scripts/emulator/), when nginx is not installed."""

    kind = "emulator"

    def __init__(self) -> None:
        self.proc = Managed("emulator", pinned([sys.executable, str(ROOT / "scripts" / "emulator"),
                                                "--host", "127.0.0.1", "--port", "0", "--no-record"]))

    def start(self) -> EmulatorUpstream:
        self.proc.start()
        self.url = self.proc.wait_for_line("EMULATOR LISTENING ").split()[2]
        return self

    def stop(self) -> None:
        self.proc.stop()


def choose_upstream(choice: str) -> LocalUpstream:
    from benchkit import nginx

    if choice == "nginx" or (choice == "auto" and nginx.available()):
        return nginx.NginxUpstream()
    return EmulatorUpstream()


class DripServer:
    """The slow SSE upstream of the concurrent-streams test (benchkit/dripserver.py)."""

    def __init__(self, interval: float, words: int = len(answers.WORDS)) -> None:
        self.events = len(answers.openai_sse_events(words=answers.repeated_words(words)))
        self.stream_seconds = interval * (self.events - 1)  # the first event comes at once
        self.proc = Managed("drip", pinned([sys.executable, "-m", "benchkit.dripserver", "--port", "0",
                                            "--interval", str(interval), "--words", str(words)]), env=child_env())
        self.url = ""

    def start(self) -> DripServer:
        self.proc.start()
        self.url = f"http://127.0.0.1:{self.proc.wait_for_line('DRIP LISTENING ').split()[2]}"
        return self

    def stats(self, reset: bool = False) -> dict:
        return json.loads(_http.request("GET", f"{self.url}/stats{'?reset=1' if reset else ''}").data)

    def stop(self) -> None:
        self.proc.stop()
