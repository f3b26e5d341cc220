#!/usr/bin/env bash
# The Milvus-server suites: a real Milvus standalone server (PyPI `milvus`, the `milvus-server` extra)
# started ONLY inside a network namespace that holds nothing but loopback, made here with `unshare --net`;
# the tests (pymilvus, facevault) run in the same namespace, so no packet can leave 127.0.0.1.
#
#   bash tests/milvus_server/run.sh [PYTEST ARGS...]     (default: the server tests, -k milvus_server)
#
# Skips (exit 0, with the reason) where the namespace cannot be made: not root, or no unshare/ip.
# FACEVAULT_TEST_MILVUS_KEEP=1 keeps the server's data and logs (the folder is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"

skip() { echo "SKIPPED milvus-server suite: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "creating a loopback-only network namespace (unshare --net) needs root"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
command -v ip >/dev/null || skip "ip (iproute2) is not installed"
command -v ss >/dev/null || skip "ss (iproute2) is not installed"
unshare --net -- true 2>/dev/null || skip "unshare --net is not permitted here (no CAP_SYS_ADMIN?)"

if ! "$PY" -c "import milvus, pymilvus" 2>/dev/null; then
  echo "installing the milvus-server extra"
  "$PY" -m pip install --quiet -e ".[milvus-server]"
fi

exec unshare --net -- "$PY" -m tests.milvus_server.session "$@"
