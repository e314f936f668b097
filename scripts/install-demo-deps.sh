#!/usr/bin/env bash
# Installs what `make demo` needs beyond Python: Graphviz (`dot`), which draws
# the threat model's diagrams in the assurance package. Idempotent and quick
# when it is already there; a clear error when it cannot be installed.
set -euo pipefail

command -v dot >/dev/null 2>&1 && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "install-demo-deps: Graphviz (dot) is missing and installing it needs root:" >&2
    echo "  apt-get install graphviz" >&2
    exit 1
  fi
fi
command -v apt-get >/dev/null 2>&1 || { echo "install-demo-deps: install Graphviz (dot)" >&2; exit 1; }
echo "install-demo-deps: installing graphviz" >&2
${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends graphviz >/dev/null
command -v dot >/dev/null 2>&1 || { echo "install-demo-deps: dot still missing" >&2; exit 1; }
