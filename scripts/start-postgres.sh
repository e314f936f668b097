#!/usr/bin/env bash
# Starts the machine's PostgreSQL for the server tests and makes the current
# user a superuser role reachable over the Unix socket (peer auth, no password).
# Installs PostgreSQL first when it is missing. Idempotent.
set -euo pipefail
fail() { echo "start-postgres: $*" >&2; [ "${CI:-}" = "true" ] && exit 1 || exit 0; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || fail "PostgreSQL is not installed and we are not root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || fail "apt-get install postgresql failed"
fi
version=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1}')
cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $2}')
if [ -z "${version}" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "${version}" main >/dev/null || fail "cannot create a cluster"
  cluster=main
fi
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
  pg_ctlcluster --skip-systemctl-redirect "${version}" "${cluster}" start || fail "cannot start PostgreSQL"
fi
for _ in $(seq 1 30); do pg_isready -q && break; sleep 0.5; done
pg_isready -q || fail "PostgreSQL does not accept connections"
me=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='${me}'\"" | grep -q 1 \
    || su postgres -c "createuser --superuser ${me}"
fi
echo "start-postgres: PostgreSQL ${version}/${cluster} is up (socket /var/run/postgresql)"
