"""Running the web app: bind a socket (port 0 = any free port), then serve it with uvicorn."""

from __future__ import annotations

import socket

from ..errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a busy port or unknown host is a UsageError."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 (any free port) to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UsageError(f"cannot listen on host {host!r} ({err.strerror}); try 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        hint = "; pass another --port, or --port 0 for any free one" if port else ""
        raise UsageError(f"cannot listen on {host}:{port} ({err.strerror or err}){hint}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl+C) or the server is told to exit."""
    import uvicorn  # uvicorn only to serve: tests drive the app without it (start-up time)

    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
