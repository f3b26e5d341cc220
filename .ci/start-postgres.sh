#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite: Debian's packages, one cluster, bound to
# 127.0.0.1 only, trust authentication (CI only: never use this configuration on a shared host).
# Idempotent: installs the packages if missing, creates the cluster if missing, (re)starts it if down.
# Run as root. Prints the connection URL for FACEVAULT_TEST_PG and exports nothing.
set -euo pipefail

PORT="${FACEVAULT_PG_PORT:-5432}"
CLUSTER="${FACEVAULT_PG_CLUSTER:-main}"

if [ "$(id -u)" -ne 0 ]; then
  echo "start-postgres.sh: run as root (it installs packages and manages a system cluster)" >&2
  exit 2
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
CONF_DIR="/etc/postgresql/${VERSION}/${CLUSTER}"

install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if [ ! -f "${CONF_DIR}/postgresql.conf" ]; then
  pg_createcluster "${VERSION}" "${CLUSTER}" --port "${PORT}" >&2
fi

# Loopback only, on the chosen port. conf.d is included by Debian's postgresql.conf and wins over it.
install -d -o postgres -g postgres "${CONF_DIR}/conf.d"
cat >"${CONF_DIR}/conf.d/facevault-ci.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PORT}
CONF
cat >"${CONF_DIR}/pg_hba.conf" <<HBA
# facevault CI: trust for the local socket and loopback only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
host    all   all   ::1/128       trust
HBA
chown postgres:postgres "${CONF_DIR}/conf.d/facevault-ci.conf" "${CONF_DIR}/pg_hba.conf"

STATUS="$(pg_lsclusters --no-header | awk -v v="${VERSION}" -v c="${CLUSTER}" '$1==v && $2==c {print $4}')"
if [ "${STATUS}" = "online" ]; then
  # Pick up configuration changes (listen_addresses/port need a restart, hba a reload).
  pg_ctlcluster "${VERSION}" "${CLUSTER}" restart >&2
else
  pg_ctlcluster "${VERSION}" "${CLUSTER}" start >&2
fi

deadline=$((SECONDS + 60))
until pg_isready -q -h 127.0.0.1 -p "${PORT}"; do
  if [ "${SECONDS}" -ge "${deadline}" ]; then
    echo "start-postgres.sh: server did not become ready on 127.0.0.1:${PORT}" >&2
    exit 1
  fi
  sleep 0.5
done

echo "postgresql://postgres@127.0.0.1:${PORT}/postgres"
