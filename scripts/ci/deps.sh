#!/usr/bin/env bash
# Installs the system packages the test suite needs on Debian/Ubuntu, when missing:
# g++ and cmake (C++ core, ctest, sanitizers), redis-server (feature-store tests start their
# own servers from it), npm (fetches ONNX Runtime), curl, promtool (from prometheus: checks
# the alert rules in docker/), chromium (the browser tests of the portal, sidecar/portal, and of
# the load-test report, loadtest, drive it headless). Does nothing when all are present.
set -euo pipefail
need=()
# command:package; a command already on PATH (e.g. npm from NodeSource) is left alone.
for pair in g++:g++ cmake:cmake redis-server:redis-server redis-cli:redis-tools npm:npm curl:curl promtool:prometheus chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
((${#need[@]})) || exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
