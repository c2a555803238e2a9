#!/usr/bin/env bash
# Installs the servers the test suite starts for itself: Debian's redis-server and PostgreSQL.
# Nothing here starts a server: each test session starts its own throwaway instances on
# loopback ports (tests/conftest.py, tests/pg_server.py) and stops them. Does nothing when both
# are already there; needs root (or sudo) only when something is missing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-servers: ${missing[*]} missing and apt-get is not available; install it by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "install-test-servers: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start system-wide instances (redis on 6379, a PostgreSQL cluster on 5432);
# the tests never use them.
