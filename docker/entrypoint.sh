#!/bin/sh
# llm-edge-agent container entrypoint (POSIX sh).
#
# exec gunicorn -c gunicorn.conf.py app.wsgi:app "$@", replacing this shell so
# SIGTERM (graceful drain) and SIGHUP (reload) reach the gunicorn master
# directly. Arguments given to the entrypoint go to gunicorn.
#
# Nothing else happens here, on purpose: the settings have one mechanism,
# app/config/settings.py, read by gunicorn.conf.py. It applies the *_FILE
# rule to every secret (NAME_FILE names a file whose content is NAME; both
# set stops start-up; see docs/configuration.md), and
# app/observability/multiproc.py prepares the Prometheus multiprocess folder
# inside PROMETHEUS_MULTIPROC_DIR. A bad setting stops start-up with one line.
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

exec gunicorn -c gunicorn.conf.py app.wsgi:app "$@"
