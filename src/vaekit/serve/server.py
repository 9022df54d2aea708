"""Serving the explorer's app with uvicorn on a socket vaekit binds itself (so that a busy port is
a clear error before anything starts), in the foreground or in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from vaekit.errors import ConfigError


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
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` on a free loopback port in a
    thread, at ``server.url``, for tests and scripts."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1") -> None:
        self.sock = bind(host, 0)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
