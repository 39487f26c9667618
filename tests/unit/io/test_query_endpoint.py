"""The sink's query endpoint: a 0600 Unix socket, for the user running the stack only."""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from driftway.io.clickhouse import QueryRefused, QueryResult
from driftway.io.query_endpoint import (
    EndpointError,
    EndpointGone,
    QueryEndpoint,
    _Server,
    ask,
    query_endpoint_file,
    running_endpoint,
)
from driftway.settings import Settings


def answer(sql: str) -> QueryResult:
    """A stand-in for the sink's query: echoes, refuses or fails by the SQL's first word."""
    if sql.startswith("refuse"):
        raise QueryRefused("refused: the query reads file(...)")
    if sql.startswith("fail"):
        raise RuntimeError("Code: 62. Syntax error")
    return QueryResult(["sql"], ["String"], [[sql]])


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A state directory any user may enter (as /tmp is), so that only the socket's own mode
    keeps others out."""
    path = Path(tempfile.mkdtemp(prefix="dw-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _listening_inet() -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def test_answers_on_a_0600_unix_socket_only(open_dir: Path) -> None:
    settings = Settings(state_dir=open_dir)
    before = _listening_inet()
    with QueryEndpoint(settings, answer) as endpoint:
        assert endpoint.path == (open_dir / "query.sock").resolve()
        assert stat.S_ISSOCK(endpoint.path.stat().st_mode)
        assert stat.S_IMODE(endpoint.path.stat().st_mode) == 0o600
        advert = query_endpoint_file(settings)
        assert stat.S_IMODE(advert.stat().st_mode) == 0o600
        assert json.loads(advert.read_text()) == {"pid": os.getpid(),
                                                  "socket": str(endpoint.path)}
        assert _listening_inet() == before  # no TCP port at all
        assert running_endpoint(settings) == endpoint.path
        assert ask(endpoint.path, "SELECT 1", 5).rows == [["SELECT 1"]]
        with pytest.raises(EndpointError) as refused:
            ask(endpoint.path, "refuse me", 5)
        assert refused.value.refused and "file(...)" in str(refused.value)
        with pytest.raises(EndpointError) as failed:
            ask(endpoint.path, "fail me", 5)
        assert not failed.value.refused and "Syntax error" in str(failed.value)
        with pytest.raises(EndpointError, match="SQL as the body"):
            ask(endpoint.path, "", 5)
    assert not endpoint.path.exists() and not query_endpoint_file(settings).exists()
    with pytest.raises(EndpointGone):
        ask(endpoint.path, "SELECT 1", 5)


def test_another_uid_is_refused_by_the_server() -> None:
    class Peer:
        def __init__(self, uid: int) -> None:
            self.uid = uid

        def getsockopt(self, *args: object) -> bytes:
            return struct.pack("3i", 1, self.uid, self.uid)

    server = _Server.__new__(_Server)  # verify_request needs no socket of its own
    if not hasattr(__import__("socket"), "SO_PEERCRED"):
        pytest.skip("no SO_PEERCRED here")
    assert server.verify_request(Peer(os.geteuid()), "")
    assert not server.verify_request(Peer(os.geteuid() + 1), "")


_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied"); sys.exit()
try:
    s.sendall(b"POST /query HTTP/1.0\\r\\nContent-Length: 8\\r\\n\\r\\nSELECT 1")
    print("answered" if s.recv(100) else "closed")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
"""


#: A Python another user can run (this one may live where only its owner can reach).
_PUBLIC_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                       if os.access(p, os.X_OK)), None)


@pytest.mark.skipif(os.geteuid() != 0 or _PUBLIC_PYTHON is None,
                    reason="needs root (and a system Python) to run a client as another user")
def test_another_local_user_cannot_query(open_dir: Path) -> None:
    def as_nobody(path: Path) -> str:
        done = subprocess.run([str(_PUBLIC_PYTHON), "-I", "-c", _CONNECT, str(path)],
                              user=65534, group=65534, capture_output=True, text=True,
                              timeout=30, cwd="/")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    with QueryEndpoint(Settings(state_dir=open_dir), answer) as endpoint:
        assert as_nobody(endpoint.path) == "denied"  # the socket's mode
        endpoint.path.chmod(0o666)  # were the mode lost, the server still checks the peer
        assert as_nobody(endpoint.path) == "closed"


def test_a_state_dir_too_deep_for_a_socket_gets_a_private_one(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 20] * 6)
    settings = Settings(state_dir=deep)
    with QueryEndpoint(settings, answer) as endpoint:
        assert endpoint.path.parent != deep and endpoint.path.parent.name.startswith(
            "driftway-query-")
        assert stat.S_IMODE(endpoint.path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(endpoint.path.stat().st_mode) == 0o600
        assert running_endpoint(settings) == endpoint.path
        assert ask(endpoint.path, "SELECT 2", 5).rows == [["SELECT 2"]]
    assert not endpoint.path.parent.exists()
