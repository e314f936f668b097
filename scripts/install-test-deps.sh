#!/usr/bin/env bash
# Installs the system parts the test suite drives for real: SoftHSM2 (PKCS#11),
# GRUB's grub-editenv and U-Boot's fw_printenv/fw_setenv/mkenvimage (agent boot
# control), faketime (frozen clocks), Chromium (reports opened headless) and
# Graphviz (the threat model's data-flow diagrams), and checks that the venv
# can import python-pkcs11.
# Idempotent and quick when everything is already there (no apt, no pip).
# Under CI=true anything that cannot be installed is an error (exit 1);
# elsewhere it is a warning and the tests that need it are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON_VENV:-.venv/bin/python}"
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

give_up() {
  echo "install-test-deps: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "install-test-deps: continuing; tests that need it will be skipped" >&2
  exit 0
}

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
[ -f "$SOFTHSM_MODULE" ] || need+=(libsofthsm2)
command -v grub-editenv >/dev/null 2>&1 || need+=(grub-common)
command -v fw_setenv >/dev/null 2>&1 || need+=(libubootenv-tool)
command -v mkenvimage >/dev/null 2>&1 || need+=(u-boot-tools)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v dot >/dev/null 2>&1 || need+=(graphviz)

if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      give_up "need root to apt-get install ${need[*]}"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || give_up "no apt-get to install ${need[*]}"
  echo "install-test-deps: installing ${need[*]}" >&2
  if ! { ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    give_up "apt-get install ${need[*]} failed"
  fi
  command -v softhsm2-util >/dev/null 2>&1 || give_up "softhsm2-util still missing"
  [ -f "$SOFTHSM_MODULE" ] || give_up "$SOFTHSM_MODULE still missing"
  for tool in grub-editenv fw_setenv fw_printenv mkenvimage faketime chromium dot; do
    command -v "$tool" >/dev/null 2>&1 || give_up "$tool still missing"
  done
fi

# python-pkcs11 comes with the venv's `pumpguard[test]` extra; repair if absent.
if [ -x "$PYTHON" ]; then
  if ! "$PYTHON" -c 'import pkcs11, pkcs11.util.ec, asn1crypto' 2>/dev/null; then
    echo "install-test-deps: installing the pkcs11 extra into the venv" >&2
    "$PYTHON" -m pip install -q -e '.[pkcs11]' || give_up "pip install '.[pkcs11]' failed"
    "$PYTHON" -c 'import pkcs11, pkcs11.util.ec, asn1crypto' 2>/dev/null ||
      give_up "python-pkcs11 still cannot be imported"
  fi
elif [ "${CI:-}" = "true" ]; then
  give_up "no venv python at $PYTHON (run make venv first)"
fi
exit 0
