#!/usr/bin/env bash
# Installs what the tests drive besides tokentop itself, once (a second run is quick):
# real clients from PyPI (tests/python/requirements.txt) in the venv .venv-test, and
# Debian's prometheus and clickhouse-server (the tests start them themselves, on
# loopback, from temporary directories). As root on Debian it installs the packages
# that are missing (those, curl, Python's venv support); otherwise it says which.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ] || missing+=(clickhouse-server)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # The packages start servers of their own where they can; the tests start theirs.
        for service in prometheus clickhouse-server; do
            if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
                systemctl stop "$service" || true
            fi
        done
    else
        echo "test-deps: the tests need ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
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
echo "test-deps: $("$venv/bin/python" --version), $(grep -cv '^#' tests/python/requirements.txt) packages in $venv; $(/usr/bin/prometheus --version 2>&1 | head -n 1); clickhouse-server $(dpkg-query -W -f '${Version}' clickhouse-server 2>/dev/null || echo '(not from a package)')"
