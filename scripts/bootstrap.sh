#!/usr/bin/env bash
# Install everything podledger needs on a fresh Debian/Ubuntu machine; safe to run again.
#   - Debian's prometheus package (prometheus + promtool) when missing
#   - uv, then a .venv with the pinned requirements and podledger itself:
#       (no flag) requirements.txt        what a deployment runs
#       --demo    requirements-demo.txt   + the demo's local S3 endpoint (moto server)
#       --dev     requirements-dev.txt    + the test tools (and the test servers' Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The demo needs prometheus/promtool; the tests also run VictoriaMetrics, nginx (auth in front of Prometheus) and
# headless chromium (the cost explorer page).
PACKAGES="prometheus"
if [ "${1:-}" = "--dev" ]; then PACKAGES="prometheus victoria-metrics nginx-light docker-compose chromium chromium-driver"; fi
MISSING=""
for pkg in $PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || MISSING="$MISSING $pkg"
done
if [ -n "$MISSING" ]; then
  echo "==> installing Debian packages:$MISSING"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1 && ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  echo "==> installing uv"
  "$PYTHON" -m pip install -q "uv==0.13.9"
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="$PYTHON -m uv"

if [ ! -x .venv/bin/python ]; then
  $UV venv -q -p "$PYTHON" .venv
fi
case "${1:-}" in
  --dev) REQ=requirements-dev.txt ;;
  --demo) REQ=requirements-demo.txt ;;
  "") REQ=requirements.txt ;;
  *) echo "usage: $0 [--demo|--dev]" >&2; exit 2 ;;
esac
# Compiled to bytecode as pip does by default (uv does not): every Airflow task, CLI run and benchmark child is a
# new process, and without .pyc files each one compiles polars, pydantic and Airflow from source (~0.5 s).
$UV pip install -q -p .venv/bin/python --compile-bytecode -r "$REQ"
$UV pip install -q -p .venv/bin/python --compile-bytecode --no-deps -e .
.venv/bin/python -m compileall -q -j 0 include plugins dags >/dev/null
