#!/usr/bin/env bash
# Installs the system parts the test suite drives for real: SoftHSM2 (PKCS#11).
# Idempotent and quick when everything is already there.
set -euo pipefail
need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: need root to apt-get install ${need[*]}" >&2
    [ "${CI:-}" = "true" ] && exit 1 || exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
