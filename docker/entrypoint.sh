#!/bin/sh
# llm-edge-agent container entrypoint (POSIX sh).
#
# 1. Checks every setting with the code gunicorn.conf.py runs
#    (python -m app.config.reference --check): a bad value stops here with one
#    line naming the variable and exit 2. This comes first because gunicorn
#    parses WEB_CONCURRENCY and FORWARDED_ALLOW_IPS itself, before its config
#    file, and would fail on a bad one with a traceback.
# 2. exec gunicorn -c gunicorn.conf.py app.wsgi:app with the entrypoint's
#    arguments, replacing this shell so SIGTERM (graceful drain) and SIGHUP
#    (reload) reach the gunicorn master directly.
#
# Nothing else happens here, on purpose: the settings have one mechanism,
# app/config/settings.py, read by gunicorn.conf.py. It applies the *_FILE
# rule to every secret (NAME_FILE names a file whose content is NAME; both
# set stops start-up; see docs/configuration.md), and
# app/observability/multiproc.py prepares the Prometheus multiprocess folder
# inside PROMETHEUS_MULTIPROC_DIR.
#
# Runs from the repository root (or /app in the image). Started from
# elsewhere, it changes to the folder above its own when gunicorn.conf.py is
# not in the current one.
set -eu

if [ ! -f gunicorn.conf.py ]; then
    here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
    cd "$here/.."
    [ -f gunicorn.conf.py ] || { printf 'entrypoint: error: gunicorn.conf.py not found in %s\n' "$(pwd)" >&2; exit 1; }
fi

python -m app.config.reference --check
exec gunicorn -c gunicorn.conf.py app.wsgi:app "$@"
