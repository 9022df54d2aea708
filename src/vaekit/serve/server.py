"""Serving the explorer's app with uvicorn on a socket vaekit binds itself (so that a busy port is
a clear error before anything starts), in the foreground or in a background thread.

uvicorn waits for a half-sent request for ever; here each request must arrive whole within
:data:`REQUEST_SECONDS` of the connection (or of the previous response), else the connection
is closed, so that slow or stalled clients cannot hold the server's connections open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
import time

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from vaekit.errors import ConfigError

#: Seconds a client has to send a whole request: its headers and its body (an upload is a few
#: kilobytes; a browser sends one at once).
REQUEST_SECONDS = 20.0
#: The Host headers a server bound to a loopback address answers (DNS rebinding: a page of
#: another site can reach loopback under its own host name; a browser then sends that name).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request to arrive whole: the
    connection is closed when the request's last byte has not come :attr:`request_seconds`
    after the connection was made or the previous response sent. An answer being computed is
    never cut: the deadline ends once the request is whole."""

    request_seconds = REQUEST_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_seconds, self._expire)

    def _expire(self) -> None:
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()  # a waiting app is told the client disconnected


def allowed_hosts(host: str, extra: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Host headers a server listening on ``host`` answers: the loopback names for a
    loopback address, with ``extra`` (``--allowed-host``); on any other address ``extra`` and
    the address itself (but 0.0.0.0 or ::, which name no host), or every host (``*``) when no
    ``extra`` is given."""
    extra = tuple(_host_name(name) for name in extra)
    if is_loopback(host):
        return (*LOOPBACK_HOSTS, *extra)
    if not extra:
        return ("*",)
    try:
        if ipaddress.ip_address(host).is_unspecified:  # 0.0.0.0, ::: no name of its own
            return extra
    except ValueError:  # a name, not an address
        return (*extra, host.lower())
    return (*extra, f"[{host}]" if ":" in host else host)


def _host_name(name: str) -> str:
    """``name`` as ``--allowed-host`` takes it: a host name, ``*.domain``, an IPv4 address or
    an IPv6 address in brackets, without a port; lower-cased."""
    if re.fullmatch(r"(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", name) or re.fullmatch(
        r"\[[0-9A-Fa-f:.]+\]", name
    ):
        return name.lower()
    raise ConfigError(
        f"--allowed-host {name!r} is not a host name (example.org, *.example.org, 192.0.2.7 or "
        "[2001:db8::7], without a port)"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); port 0 picks a free one. A :class:`ConfigError` says
    why when the address cannot be used.

    The socket is made with ``IPPROTO_TCP`` explicitly: asyncio turns Nagle's algorithm off only
    on such sockets, and with it on, each keep-alive response waits ~40 ms for a delayed ACK.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return (
        f"http://[{host}]:{port}/" if sock.family == socket.AF_INET6 else f"http://{host}:{port}/"
    )


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C."""
    uvicorn.Server(server_config(app)).run(sockets=[sock])


def server_config(app: FastAPI, request_seconds: float = REQUEST_SECONDS) -> uvicorn.Config:
    """uvicorn's settings for the explorer: warnings only, and :class:`DeadlineProtocol` with
    ``request_seconds``."""
    protocol = type("DeadlineProtocol", (DeadlineProtocol,), {"request_seconds": request_seconds})
    return uvicorn.Config(app, log_level="warning", http=protocol)


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` on a free loopback port in a
    thread, at ``server.url``, for tests and scripts."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", request_seconds: float = REQUEST_SECONDS
    ) -> None:
        self.sock = bind(host, 0)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(server_config(app, request_seconds))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the explorer's server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
