#!/usr/bin/env bash
# Install the system tools the test suite needs, when they are missing:
#   promtool      (Debian package "prometheus")   tests/deploy: rules and config checks
#   redis-server  (Debian package "redis-server") tests that start their own Redis
#   openssl       (Debian package "openssl")      tests/e2e/test_tls.py: a self-signed certificate
#   setpriv       (Debian package "util-linux")   tests/e2e/test_tls.py: root without its file capabilities
#   wrk, nginx    (Debian packages "wrk", "nginx") tests/bench: the benchmark's --quick run
#
# Idempotent and non-interactive: does nothing when all are on PATH; runs
# `apt-get update` only when a package is missing from the local index.
# Needs root (or sudo) on a Debian/Ubuntu machine. The Python tools
# (hadolint, docker compose, kubernetes-validate, shellcheck) come from
# requirements-dev.txt instead.
#
# Installing a package must not start its service (a stray Prometheus on
# :9090 or Redis on :6379 would collide with tests): when the machine has no
# /usr/sbin/policy-rc.d, one that forbids starting services is put in place
# for the duration of the install and removed afterwards.
set -eu
set -o pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin, not always on a non-login PATH

# tool -> Debian package
declare -A packages=(
    [promtool]=prometheus
    [redis-server]=redis-server
    [openssl]=openssl
    [setpriv]=util-linux
    [wrk]=wrk
    [nginx]=nginx
)

missing=()
for tool in "${!packages[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing+=("${packages[$tool]}")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-tools: ${!packages[*]} already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-test-tools: need root to install: ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: no apt-get; install these yourself: ${missing[*]}" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
added_policy=no
cleanup() {
    if [ "$added_policy" = yes ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# added by install-test-tools.sh\nexit 101\n' \
        | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    added_policy=yes
fi

# Refresh the package index only if a package is unknown to it.
for pkg in "${missing[@]}"; do
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
        echo "install-test-tools: apt-get update"
        "${sudo[@]}" apt-get update -qq
        break
    fi
done

echo "install-test-tools: installing ${missing[*]}"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for tool in "${!packages[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "install-test-tools: $tool still missing after install" >&2
        exit 1
    }
done
echo "install-test-tools: done"
