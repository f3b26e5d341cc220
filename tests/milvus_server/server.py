"""Start, kill and restart a Milvus standalone server from the PyPI ``milvus`` package, loopback only.

The package's default configuration listens on every interface and lets the server's components reach
each other through the machine's first non-loopback address. Here every ``ip:`` entry of its config
template is set to 127.0.0.1 and every ``localhost`` replaced by 127.0.0.1; and ``start`` refuses to run
unless the process is in a network namespace that holds nothing but loopback (``run.sh`` makes one).
The package's ``template=`` argument drops the glog file in 2.3.5, so the patched template text is set on a
default ``MilvusServerConfig`` and parsed again instead.

The server's state (pid, URI, folders, ports) is a JSON file whose path is ``FACEVAULT_TEST_MILVUS_STATE``,
so the tests in the namespace can ``kill -9`` it and ``restart`` it on the same data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_ENV = "FACEVAULT_TEST_MILVUS_STATE"
URI_ENV = "FACEVAULT_TEST_MILVUS_URI"
READY_TIMEOUT_S = 180.0


@dataclass
class State:
    pid: int
    uri: str  # facevault index URL, milvus+http://127.0.0.1:PORT
    base_dir: str  # the server's data, logs and configs
    web_port: int  # /healthz and metrics
    proxy_port: int

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None = None) -> State:
        path = path or Path(os.environ[STATE_ENV])
        return cls(**json.loads(path.read_text()))


def loopback_only() -> str | None:
    """None when the only network interface of this process's namespace is an up loopback, else why not.
    (/proc/self/net follows the process's network namespace; /sys/class/net follows the mount's.)"""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    names = sorted(line.split(":", 1)[0].strip() for line in lines)
    if names != ["lo"]:
        return f"network interfaces other than lo are present: {names}"
    up = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True).stdout
    if "UP" not in up.split(">", 1)[0]:
        return "lo is down"
    return None


def loopback_template(text: str) -> str:
    """The config template with every component on 127.0.0.1."""
    text = re.sub(r"(?m)^(\s*)ip:[^\n]*$", r"\g<1>ip: 127.0.0.1", text)
    return text.replace("localhost", "127.0.0.1")


def _bin_cache() -> Path:
    import milvus

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "facevault" / f"milvus-server-{milvus.__version__}" / "bin"


def _env(base: Path, web_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEPLOY_MODE="STANDALONE",
        METRICS_PORT=str(web_port),
        MILVUS_RUN_DIR=str(base / "run"),
        LD_LIBRARY_PATH=":".join([str(base / "bin"), os.environ.get("LD_LIBRARY_PATH", "")]),
    )
    return env


def _launch(base: Path, web_port: int) -> int:
    logs = base / "logs"
    with open(logs / "milvus-stdout.log", "a") as out, open(logs / "milvus-stderr.log", "a") as err:
        proc = subprocess.Popen(
            [str(base / "bin" / "milvus"), "run", "standalone"],
            cwd=base,
            env=_env(base, web_port),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return proc.pid


def _wait_ready(pid: int, web_port: int, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll /healthz until it answers OK; fail at once if the process died."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{web_port}/healthz"
    while time.monotonic() < deadline:
        if not alive(pid):
            raise RuntimeError(f"Milvus server {pid} exited while starting (see its logs)")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if b"OK" in resp.read():
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"Milvus server not ready after {timeout:.0f} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is a dead child of ours
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start(base: Path, state_file: Path) -> State:
    """Configure (loopback only), start and wait for a server whose data lives in ``base``."""
    why = loopback_only()
    if why:
        raise RuntimeError(f"refusing to start Milvus outside a loopback-only network namespace: {why}")
    import milvus

    base.mkdir(parents=True, exist_ok=True)
    cache = _bin_cache()
    cache.mkdir(parents=True, exist_ok=True)
    if not (base / "bin").exists():
        (base / "bin").symlink_to(cache, target_is_directory=True)
    config = milvus.MilvusServerConfig(data_dir=str(base))
    config.template_text = loopback_template(config.template_text)
    config.config_key_maps, config.configurable_items = {}, {}
    config.parse_template()
    config.resolve()  # picks free ports on 127.0.0.1, writes configs/milvus.yaml and glog.conf
    milvus._initialize_data_files(str(base))  # unpacks the binaries once into the cache
    written = (base / "configs" / "milvus.yaml").read_text()
    assert "localhost" not in written and not re.search(r"(?m)^\s*ip:\s*(#.*)?$", written)
    web_port, sock = config.resolve_port(9091)
    sock.close()
    proxy_port = int(config.get("proxy_port"))
    pid = _launch(base, web_port)
    state = State(pid, f"milvus+http://127.0.0.1:{proxy_port}", str(base), web_port, proxy_port)
    state.save(state_file)
    _wait_ready(pid, web_port)
    return state


def kill9(state_file: Path | None = None) -> State:
    """``kill -9`` the server and reap it; returns its state."""
    state = State.load(state_file)
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


def restart(state_file: Path | None = None) -> State:
    """Start the server again on the same data, ports and config (after ``kill9``)."""
    path = state_file or Path(os.environ[STATE_ENV])
    state = State.load(path)
    if alive(state.pid):
        raise RuntimeError(f"Milvus server {state.pid} is still running")
    base = Path(state.base_dir)
    state.pid = _launch(base, state.web_port)
    state.save(path)
    _wait_ready(state.pid, state.web_port)
    _wait_loaded(state)
    return state


def _wait_loaded(state: State, timeout: float = READY_TIMEOUT_S) -> None:
    """After a restart /healthz answers before the collections are back in memory: wait until every
    collection of every database is loaded again, as an operator would before sending traffic."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    server = state.uri.removeprefix("milvus+")
    deadline = time.monotonic() + timeout
    while True:
        try:
            dbs = MilvusClient(server, timeout=10).list_databases()
            pending = []
            for db in dbs:
                client = MilvusClient(server, db_name=db, timeout=10)
                for name in client.list_collections():
                    load = client.get_load_state(name).get("state")
                    if "Loaded" not in str(load) and "NotLoad" not in str(load):
                        pending.append(f"{db}.{name}: {load}")
            if not pending:
                return
        except MilvusException as exc:
            pending = [str(exc)]
        if time.monotonic() > deadline:
            raise TimeoutError(f"Milvus collections not loaded after restart: {pending}")
        time.sleep(0.5)


def stop(state_file: Path) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 20 s)."""
    state = State.load(state_file)
    if not alive(state.pid):
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(state.pid):
        kill9(state_file)


def rss_bytes(pid: int) -> int:
    """Resident memory of the server process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
