"""Inside the loopback-only network namespace that ``run.sh`` made: bring ``lo`` up, start a Milvus
standalone server, run the Milvus-server tests against it with pytest, and stop it.

``python -m tests.milvus_server.session [PYTEST ARGS...]``; it refuses to start anything unless this
process's namespace holds nothing but loopback (see server.loopback_only). The tests find the server
through FACEVAULT_TEST_MILVUS_URI and FACEVAULT_TEST_MILVUS_STATE (pid, ports, data folder: the fault
tests ``kill -9`` and restart it through server.kill9 / server.restart).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import server

DEFAULT_TESTS = [
    "tests/test_milvus_server_net.py",
    "tests/test_index_backends.py",
    "tests/test_milvus_flow.py",
    "tests/test_milvus_server_faults.py",
]


def _non_loopback_connections() -> list[str]:
    """Lines of ``ss -tanp`` (every TCP socket of this namespace) whose either end is not loopback."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    bad = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        for addr in parts[3:5]:
            host = addr.rsplit(":", 1)[0].strip("[]")
            if host not in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "*", "0.0.0.0", "::") and not (
                host.startswith("127.") or host.startswith("::ffff:127.")
            ):
                bad.append(line)
    return bad


def main(argv: list[str]) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    why = server.loopback_only()
    if why:
        print(f"milvus-server suite: not in a loopback-only network namespace ({why}); refusing", flush=True)
        return 2
    keep = os.environ.get("FACEVAULT_TEST_MILVUS_KEEP") == "1"
    base = Path(tempfile.mkdtemp(prefix="facevault-milvus-"))
    state_file = base / "state.json"
    began = time.monotonic()
    try:
        state = server.start(base / "server", state_file)
        print(
            f"milvus-server: pid {state.pid} at {state.uri} ready in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        env = {
            **os.environ,
            server.URI_ENV: state.uri,
            server.STATE_ENV: str(state_file),
            "FACEVAULT_TEST_IN_NETNS": "1",
        }
        args = argv or [*DEFAULT_TESTS, "-k", "milvus_server", "-p", "no:cacheprovider"]
        rc = subprocess.run([sys.executable, "-m", "pytest", *args], env=env).returncode
        # pytest's summary stays the last line of a good run: only a failed check prints after it
        bad = _non_loopback_connections()
        if bad:
            print("milvus-server: NON-LOOPBACK TCP sockets found (ss -tanp):\n" + "\n".join(bad), flush=True)
            rc = rc or 3
        return rc
    finally:
        if state_file.exists():
            server.stop(state_file)
        if keep:
            print(f"milvus-server: data and logs kept in {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
