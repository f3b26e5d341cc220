"""The Milvus-server suites run only inside a loopback-only network namespace (tests/milvus_server/run.sh):
nothing but ``lo`` here, and every TCP socket of the namespace, the server's included, on loopback."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("FACEVAULT_TEST_MILVUS_URI"),
    reason="no Milvus server: FACEVAULT_TEST_MILVUS_URI is set by tests/milvus_server/run.sh",
)


def _addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = bytes.fromhex(hex_addr.split(":")[0])
    if len(host) == 4:
        return ipaddress.IPv4Address(host[::-1])
    words = b"".join(host[i : i + 4][::-1] for i in range(0, 16, 4))
    v6 = ipaddress.IPv6Address(words)
    return v6.ipv4_mapped or v6


def test_milvus_server_namespace_has_only_loopback() -> None:
    from tests.milvus_server.server import State, alive, loopback_only

    assert loopback_only() is None
    state = State.load()
    assert alive(state.pid)
    assert state.uri.startswith("milvus+http://127.0.0.1:")


def test_milvus_server_every_tcp_socket_is_loopback() -> None:
    from facevault.index.milvus_index import milvus_client

    milvus_client(os.environ["FACEVAULT_TEST_MILVUS_URI"]).has_collection("x")  # a live client connection
    seen = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            for end in (local, remote):
                addr = _addr(end)
                assert addr.is_loopback or addr.is_unspecified, line
            seen += state == "01"  # ESTABLISHED
    assert seen > 0
