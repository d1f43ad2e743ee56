#!/bin/sh
# llm-edge-agent container entrypoint (POSIX sh).
#
# 1. Secrets from files: for every NAME in OPENAI_API_KEY, ANTHROPIC_API_KEY,
#    REDIS_URL and any other *_API_KEY (extra providers' api_key_env), if
#    NAME_FILE is set, the file's content (trailing newlines dropped) becomes
#    NAME, and NAME_FILE is removed from the environment. Setting both NAME
#    and NAME_FILE is an error. This is how Docker and Kubernetes secrets
#    mounted as files reach the gateway.
# 2. Prometheus multiprocess folder: PROMETHEUS_MULTIPROC_DIR if set, else a
#    fresh private folder from mktemp under ${TMPDIR:-/tmp}. It is created if
#    missing (mode 0700) and emptied of stale *.db files left by a previous
#    run, so counters never resume from a dead process's values.
# 3. exec gunicorn -c gunicorn.conf.py app.wsgi:app "$@", replacing this shell
#    so SIGTERM (graceful drain) and SIGHUP (reload) reach the gunicorn
#    master directly. Arguments given to the entrypoint go to gunicorn.
#
# Runs from the repository root (or /app in the image). Started from
# elsewhere, it changes to the folder above its own when gunicorn.conf.py is
# not in the current one.
set -eu

log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# load_secret_file NAME: NAME_FILE -> NAME.
load_secret_file() {
    name=$1
    eval "file=\${${name}_FILE:-}"
    [ -n "$file" ] || return 0
    eval "current=\${${name}:-}"
    [ -z "$current" ] || die "both ${name} and ${name}_FILE are set; set only one"
    [ -f "$file" ] && [ -r "$file" ] || die "${name}_FILE=${file} is not a readable file"
    value=$(cat "$file")
    [ -n "$value" ] || die "${name}_FILE=${file} is empty"
    export "${name}=${value}"
    unset "${name}_FILE"
    log "${name} read from ${name}_FILE"
}

secret_names="OPENAI_API_KEY ANTHROPIC_API_KEY REDIS_URL"
# Any other NAME_API_KEY_FILE in the environment (extra providers).
extra_names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*_API_KEY\)_FILE=.*/\1/p')
for name in $secret_names $extra_names; do
    load_secret_file "$name"
done

# Prometheus multiprocess folder.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    metrics_dir=$PROMETHEUS_MULTIPROC_DIR
    case $metrics_dir in
        /) die "PROMETHEUS_MULTIPROC_DIR must not be /" ;;
    esac
    if [ ! -d "$metrics_dir" ]; then
        (umask 077 && mkdir -p "$metrics_dir") \
            || die "cannot create PROMETHEUS_MULTIPROC_DIR=${metrics_dir}"
    fi
else
    metrics_dir=$(mktemp -d "${TMPDIR:-/tmp}/llm-edge-metrics.XXXXXX") \
        || die "cannot create a metrics folder under ${TMPDIR:-/tmp}"
fi
[ -w "$metrics_dir" ] || die "PROMETHEUS_MULTIPROC_DIR=${metrics_dir} is not writable"
# Only the client's own files (*.db), never anything else a misconfigured
# path might point at.
find "$metrics_dir" -mindepth 1 -maxdepth 1 -type f -name '*.db' -exec rm -f {} +
export PROMETHEUS_MULTIPROC_DIR="$metrics_dir"

if [ ! -f gunicorn.conf.py ]; then
    here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
    cd "$here/.."
    [ -f gunicorn.conf.py ] || die "gunicorn.conf.py not found in $(pwd)"
fi

exec gunicorn -c gunicorn.conf.py app.wsgi:app "$@"
