#!/usr/bin/env bash
# Feature-store test dependencies: redis-server and redis-cli from Debian. The tests in
# features/ start their own servers (standalone and a 3-master Redis Cluster) from
# these binaries in temp dirs on ports 7300-7399, and stop them when they end, so this
# script only installs and checks. Run by .ci/run before the tests.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools
fi
# Debian's package starts a system redis-server on 6379; the tests do not use it.
redis-server --version
redis-cli --version

# Cluster mode needs the cluster bus ports (+10000) free as well: 17300-17399.
for p in 7300 17300; do
  if (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "warning: port $p is in use; the feature-store tests pick other free ports in 7300-7399" >&2
  fi
done
