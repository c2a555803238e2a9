#!/usr/bin/env bash
# Installs the servers the test suite starts for itself (throwaway instances on loopback
# ports, see tests/conftest.py): Debian's redis-server. Does nothing when it is already there.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

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
# The package may start a system-wide instance on port 6379; the tests never use it.
