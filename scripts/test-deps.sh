#!/usr/bin/env bash
# Installs what the tests drive besides tokentop itself, once (a second run is quick):
# real clients from PyPI (tests/python/requirements.txt) in the venv .venv-test.
# As root on Debian it also installs Python's venv support if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    else
        echo "test-deps: Python 3 with venv is needed (Debian: apt-get install python3 python3-venv)" >&2
        exit 1
    fi
fi

venv=.venv-test
stamp="$venv/.installed-$(sha256sum tests/python/requirements.txt | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
    touch "$stamp"
fi
echo "test-deps: $("$venv/bin/python" --version), $(wc -l < <(grep -v '^#' tests/python/requirements.txt)) packages in $venv"
