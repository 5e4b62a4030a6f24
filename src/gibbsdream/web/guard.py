"""What every request to the web page must pass before the app sees it (a plain ASGI middleware).

The page listens on this machine, but a browser on this machine also runs pages from elsewhere,
and those can send requests here. So, in this order:

1. **Host**: the ``Host`` header must name this server (a loopback name, the address it listens
   on, or a name its owner allowed). A page on another site that re-points its own name at
   127.0.0.1 (DNS rebinding) sends its own name here, so it can neither read the answers (model
   names and checkpoint paths) nor start work. Refused with 400.
2. **Same origin** for anything but GET/HEAD/OPTIONS: an ``Origin`` header, when present, must be
   this server's own origin, and ``Sec-Fetch-Site``, when present, ``same-origin`` or ``none``
   (typed into the address bar). A form or ``fetch`` on another site's page carries its own
   origin and ``cross-site`` (or ``same-site`` for another port of this machine). Refused
   with 403.
3. **JSON only**: a state-changing request that carries a body must say ``Content-Type:
   application/json`` (optionally ``; charset=utf-8``). Pages elsewhere can send ``text/plain``
   or form bodies without asking, but not JSON. Refused with 415.
4. **Size**: a declared ``Content-Length`` above the limit is refused before a byte is read; a
   body without one (chunked) is counted while the app reads it, and the read stops as soon as it
   passes the limit. Refused with 413, and the connection is closed so the rest is never read.

Every response, refusals and errors included, carries :data:`SECURITY_HEADERS`.

Starlette's ``TrustedHostMiddleware`` does step 1 only and answers in plain text (not the API's
one-line JSON), and no Starlette middleware counts a chunked body, so this module does the four
together, in one place that every response passes on its way out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from ..errors import UsageError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # older browsers that ignore frame-ancestors
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCHES = ("same-origin", "none")
DEFAULT_PORTS = {"http": 80, "https": 443}

# A host name or IPv4 address, or an IPv6 address in brackets, then an optional port: nothing else
# (no user@, path, spaces), so that no parser downstream can read another host out of it.
_NAME = r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})?))"
_HOST = re.compile(_NAME + r"(?::(?P<port>[0-9]{1,5}))?")
_BARE_IP6 = re.compile(r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")
_ORIGIN = re.compile(r"(?P<scheme>https?)://" + _NAME + r"(?::(?P<port>[0-9]{1,5}))?")


class RequestTooLarge(Exception):
    """The body being read passed the byte limit (raised from the counting ``receive``)."""


def host_key(text: str) -> str:
    """A host name as compared here: lower case, an IPv6 address without its brackets.

    Raises :class:`UsageError` for anything that is not a bare host name or address (a scheme,
    a port, a path, spaces), which no ``Host`` header could match.
    """
    if not isinstance(text, str):
        raise UsageError(f"an allowed host must be a host name or IP address, got {text!r}")
    if _BARE_IP6.fullmatch(text.strip()):  # "::1" as --host takes it; a Host header has "[::1]"
        return text.strip().lower()
    match = _HOST.fullmatch(text.strip())
    if match is None or match["port"] is not None:
        raise UsageError(
            f"cannot allow host {text!r}: give a bare host name or IP address (like example.local, "
            "192.168.1.5 or ::1), without scheme, port or path"
        )
    return (match["ip6"] or match["name"]).lower()


def _split(match: re.Match, default_port: int | None) -> tuple[str, int | None]:
    port = int(match["port"]) if match["port"] is not None else default_port
    return (match["ip6"] or match["name"]).lower(), port


def is_json_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` is ``application/json``, with at most a UTF-8 charset."""
    if not content_type:
        return False
    kind, *params = (part.strip() for part in content_type.split(";"))
    if kind.lower() != "application/json":
        return False
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


class RequestGuard:
    """ASGI middleware: the Host, origin, content-type and size checks of the module docstring.

    Args:
        app: the ASGI application to guard.
        allowed_hosts: host names (besides the loopback ones) that ``Host`` may name.
        max_body_bytes: the most bytes of request body the app is given.
        too_large: what a 413 says (by default, the limit in bytes).
    """

    def __init__(self, app, allowed_hosts: Iterable[str] = (), max_body_bytes: int = 2**20, too_large: str = ""):
        self.app = app
        self.allowed_hosts = frozenset(host_key(h) for h in (*LOOPBACK_HOSTS, *allowed_hosts))
        self.max_body_bytes = max_body_bytes
        self.too_large_message = (
            too_large or f"the request is larger than this server's limit of {max_body_bytes} bytes"
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = with_security_headers(message)
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await respond(send_with_headers, *refusal)
            return
        read = 0

        async def counted_receive():
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_body_bytes:
                    raise RequestTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except RequestTooLarge:
            if started:  # nothing reads a body after answering; if something does, fail loudly
                raise
            await respond(send_with_headers, *self.too_large())

    def too_large(self) -> tuple[int, str]:
        return 413, self.too_large_message

    def refusal(self, scope) -> tuple[int, str] | None:
        """``(status, message)`` if the request is refused before it reaches the app.

        Every refusal closes the connection (:func:`respond`), so a body it carries is never read.
        """
        headers = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        hosts = headers.get("host", [])
        host = _HOST.fullmatch(hosts[0].strip()) if len(hosts) == 1 else None
        scheme = scope.get("scheme", "http")
        if host is None or _split(host, None)[0] not in self.allowed_hosts:
            shown = ", ".join(repr(h[:100]) for h in hosts) or "none"
            return 400, (
                f"this server does not answer to the host name {shown}; open it at its own address "
                "(like http://127.0.0.1:PORT/), or ask its owner to allow that name"
            )
        if scope["method"] in SAFE_METHODS:
            return None
        own = _split(host, DEFAULT_PORTS.get(scheme))
        for origin in headers.get("origin", []):
            match = _ORIGIN.fullmatch(origin.strip())
            if match is None or match["scheme"] != scheme or _split(match, DEFAULT_PORTS[match["scheme"]]) != own:
                return (
                    403,
                    f"refused a request from the page at origin {origin[:100]!r}: "
                    "this server takes requests from its own page only",
                )
        for site in headers.get("sec-fetch-site", []):
            if site.strip().lower() not in SAME_ORIGIN_FETCHES:
                return (
                    403,
                    f"refused a {site[:40]!r} request (Sec-Fetch-Site): "
                    "this server takes requests from its own page only",
                )
        has_body = "transfer-encoding" in headers or any(v.strip() != "0" for v in headers.get("content-length", []))
        types = headers.get("content-type", [])
        if (has_body or types) and not (len(types) == 1 and is_json_type(types[0])):
            shown = ", ".join(repr(t[:100]) for t in types) or "none"
            return 415, f"the request body must be JSON with Content-Type: application/json, got content type {shown}"
        for length in headers.get("content-length", []):
            if length.strip().isdigit() and int(length) > self.max_body_bytes:
                return self.too_large()
        return None


def with_security_headers(message: dict) -> dict:
    """An ``http.response.start`` message with :data:`SECURITY_HEADERS` set (replacing any)."""
    names = {name.lower().encode("latin-1") for name in SECURITY_HEADERS}
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
    return {**message, "headers": headers}


async def respond(send, status: int, message: str) -> None:
    """Refuse a request: ``{"error": message}`` with ``status``, and ``Connection: close``, which
    makes the server drop the connection afterwards instead of reading the rest of the body."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
