#!/usr/bin/env bash
# Installs the servers the test suite starts for itself (each test run starts its own throwaway
# instance and stops it; nothing here starts a server). Idempotent; needs root only when
# something is missing.
set -euo pipefail

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-test-servers: $* missing and not root: install it with apt-get (the tests that need it will fail)" >&2
        return 0
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- PostgreSQL (tests/pg_server.py: RustPostgresCheckpointer's tests and benchmark) ---------
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null && ! command -v initdb > /dev/null; then
    apt_install postgresql
fi
# --- end PostgreSQL ----------------------------------------------------------------------------
