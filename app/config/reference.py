"""docs/configuration.md, made from the table in app/config/settings.py; and a check of the settings.

``scripts/config-docs > docs/configuration.md`` (``python -m app.config.reference``) writes the page;
tests/unit/test_config_docs.py fails when the page and the table differ. ``--check`` validates the
environment (and ``.env``) as gunicorn.conf.py does: one line and exit 2 on a bad value.
"""

from __future__ import annotations

import sys

from app.config.settings import GROUPS, TABLE, ConfigError, Settings, load_environ

COMMAND = "scripts/config-docs > docs/configuration.md"

INTRO = """\
# Configuration

<!-- Made by `{command}` from app/config/settings.py: edit the table there, not this page. -->

Every setting is an environment variable, read once at start by
`gunicorn.conf.py` (and again by each worker) through one table,
`app/config/settings.py`, which declares each setting's variable, default,
allowed values and meaning; this page is made from it.

- **Where values come from:** the process environment, laid over a `.env`
  file in the working directory (the real environment wins). An unset or empty
  variable takes the default.
- **A bad value stops start-up** with one line naming the variable, and exit
  status 2 (`llm-edge-agent: configuration error: PORT must be an integer from
  0 to 65535, got 'eighty'`). gunicorn reads `WEB_CONCURRENCY` and
  `FORWARDED_ALLOW_IPS` itself before `gunicorn.conf.py` runs, so for those
  two a value gunicorn cannot parse gives gunicorn's own error under plain
  `gunicorn`; `scripts/serve` and the image's entrypoint check first.
- **Secrets and the `*_FILE` rule:** for every setting marked *secret* below
  (and every provider key named by `api_key_env` in `MODELS_FILE`),
  `NAME_FILE` names a file whose content, stripped, is the value (Docker and
  Kubernetes secrets). Setting both `NAME` and `NAME_FILE` is an error, and so
  is a file that cannot be read or is empty. Secrets never appear in logs or
  error messages.
- **The YAML files** named by `MODELS_FILE`, `PRICING_FILE`,
  `RATE_LIMITS_FILE` and `CLIENTS_FILE` are described in
  [api](api.md) (models), [observability](observability.md#cost) (prices) and
  [access](access.md) (clients and rate limits). `SIGHUP` reloads them.
- The OpenTelemetry SDK's own variables (`OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER`, ...) apply as the SDK documents them.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    out = [INTRO.format(command=COMMAND)]
    for group in GROUPS:
        out.append(f"\n## {group}\n\n| variable | default | takes | meaning |\n|---|---|---|---|\n")
        for entry in (e for e in TABLE if e.group == group):
            doc = entry.doc + (f"; alias {', '.join(f'`{a}`' for a in entry.aliases)}" if entry.aliases else "")
            if entry.secret:
                doc += f". *Secret*: `{entry.env}_FILE` works"
            default = entry.default_text
            default = f"`{default}`" if entry.shown is None and entry.default is not None else default
            out.append(f"| `{entry.env}` | {_cell(default)} | {_cell(entry.kind.what)} | {_cell(doc)} |\n")
    return "".join(out)


def check() -> int:
    try:
        Settings.from_env(load_environ())
    except ConfigError as exc:
        print(f"llm-edge-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        return check()
    if argv:
        print("usage: python -m app.config.reference [--check]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
