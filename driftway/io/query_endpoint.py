"""The sink's query endpoint: read-only SQL on the embedded engine while the pipeline runs.

chDB lets one process own its directory, so `driftway query` asks the process that does (the
sink). The endpoint is HTTP (``POST /query``, SQL in the body, JSON back) over a Unix domain
socket, ``<state_dir>/query.sock``, with mode 0600: only the user who runs the stack can connect
(the kernel checks the file's permissions, and the server checks the peer's uid as well). No
TCP port: no other local user, container or browser page can reach it. Where the socket is
advertised, and by which process, is ``<state_dir>/query.json`` (also 0600).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import socketserver
import struct
import tempfile
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psutil

from driftway.io.clickhouse import QueryRefused, QueryResult
from driftway.settings import Settings

log = logging.getLogger(__name__)

#: Longest a socket path may be (sun_path, less its terminating NUL, on Linux).
MAX_SOCKET_PATH = 107
#: Largest SQL text the endpoint reads.
MAX_SQL_BYTES = 1024 * 1024


class EndpointGone(RuntimeError):
    """Nothing answers on the advertised socket (a sink that died without cleaning up)."""


class EndpointError(RuntimeError):
    """The endpoint answered with an error; `refused` when the query was refused as reading
    outside the monitoring database."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def query_endpoint_file(settings: Settings) -> Path:
    """Where the sink advertises its query socket (and its pid)."""
    return settings.state_dir / "query.json"


def socket_path(settings: Settings) -> Path:
    """Where the sink's query socket goes: in the state directory, or, if that path is too long
    for a Unix socket, in a private (0700) directory of its own under the system's temp dir."""
    path = (settings.state_dir / "query.sock").resolve()
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="driftway-query-")) / "query.sock"


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    answer: Callable[[str], QueryResult]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Only the user running the stack (the socket's mode says so too; this is the
        kernel's word on who connected, where it gives one)."""
        peercred = getattr(socket, "SO_PEERCRED", None)
        if peercred is None:
            return True  # not Linux: the 0600 socket file alone decides
        _pid, uid, _gid = struct.unpack("3i", request.getsockopt(
            socket.SOL_SOCKET, peercred, struct.calcsize("3i")))
        if uid != os.geteuid():
            log.warning("query endpoint: refused a connection from uid %d", uid)
            return False
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path != "/query":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /query only"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= MAX_SQL_BYTES:
            self._reply(HTTPStatus.BAD_REQUEST,
                        {"error": f"send the SQL as the body (at most {MAX_SQL_BYTES} bytes)"})
            return
        sql = self.rfile.read(length).decode(errors="replace")
        try:
            self._reply(HTTPStatus.OK, self.server.answer(sql).to_json())
        except QueryRefused as exc:
            self._reply(HTTPStatus.FORBIDDEN, {"error": str(exc), "refused": True})
        except Exception as exc:  # ClickHouse's reason, for the one who asked
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"  # a Unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class QueryEndpoint:
    """The endpoint of one process: `start` it with the function that answers a query (the
    sink's), `stop` it on the way out. Answers in daemon threads."""

    def __init__(self, settings: Settings, answer: Callable[[str], QueryResult]) -> None:
        self.settings = settings
        self.answer = answer
        self.path = socket_path(settings)
        self._server: _Server | None = None

    def start(self) -> QueryEndpoint:
        """Listen on the socket (0600) and advertise it in query.json (0600)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a dead sink's
        old = os.umask(0o177)  # the socket is created 0600: never connectable by others
        try:
            server = _Server(str(self.path), _Handler, bind_and_activate=True)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        server.answer = self.answer
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="query-endpoint").start()
        advert = query_endpoint_file(self.settings)
        advert.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(advert, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "socket": str(self.path)}, f)
        return self

    def stop(self) -> None:
        """Stop answering; remove the socket and the advert."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        query_endpoint_file(self.settings).unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        if self.path.parent.name.startswith("driftway-query-"):
            self.path.parent.rmdir()

    def __enter__(self) -> QueryEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def running_endpoint(settings: Settings) -> Path | None:
    """The socket of a live sink's query endpoint for this state directory, if there is one."""
    try:
        info = json.loads(query_endpoint_file(settings).read_text())
        pid, path = int(info["pid"]), Path(info["socket"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or not one a sink wrote
    return path if psutil.pid_exists(pid) and path.is_socket() else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ask(path: Path, sql: str, timeout: float) -> QueryResult:
    """The endpoint's answer to `sql`; EndpointGone if nothing listens, EndpointError with its
    reason if it refused or failed."""
    conn = _UnixConnection(path, timeout)
    try:
        try:
            conn.request("POST", "/query", body=sql.encode(),
                         headers={"Content-Type": "text/plain; charset=utf-8"})
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise EndpointGone(f"no query endpoint at {path}: {exc}") from exc
        except PermissionError as exc:
            raise EndpointError(f"the query endpoint at {path} belongs to another user: run "
                                "`driftway query` as the user who runs the stack") from exc
        response = conn.getresponse()
        body = json.loads(response.read())
    except TimeoutError as exc:
        raise EndpointError(f"the sink gave no answer within {timeout:g} s") from exc
    except (http.client.HTTPException, ConnectionError, ValueError) as exc:
        raise EndpointError(f"the query endpoint at {path} did not answer ({exc}): is it "
                            "another user's?") from exc
    finally:
        conn.close()
    if response.status != HTTPStatus.OK:
        raise EndpointError(body.get("error", f"HTTP {response.status}"),
                            refused=bool(body.get("refused")))
    return QueryResult(body["columns"], body["types"], body["rows"])
