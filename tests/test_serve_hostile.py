"""``gibbsdream serve`` against hostile requests, on a real uvicorn server on 127.0.0.1.

Two servers over the tiny checkpoints of test_serve.py, each on a free port:

* ``remote``: a separate Python process (so its memory can be read from /proc), started in a
  folder that holds files named like mask specs (``random``, ``box``, ``decoy.png``), with
  ``max_jobs=1``, a 256 KB upload limit and one extra allowed host name;
* ``local``: uvicorn in a thread of this process, for what needs a hand inside the server: the
  bytes of body the app was given (an ASGI wrapper counts them), an upload held half-way by an
  event (to test the job limit without timing), and a bug that must still answer with the headers.

Requests go through httpx (which sends the Host header it is given) or raw sockets (chunked
bodies, paths that httpx would clean up, a request without Host). Every loop here is bounded in
count and in time (socket timeouts), and nothing asserts how fast anything is.
"""

import base64
import io
import json
import select
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gibbsdream
from cli_harness import ENV
from test_serve import SIDE, image_model, serve_work, string_model  # noqa: F401  (shared fixtures)

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

UPLOAD_LIMIT = 256 * 1024  # the remote server's max_upload_bytes
BODY_LIMIT = UPLOAD_LIMIT * 4 // 3 + 65536  # what Limits.max_request_bytes makes of it
EXTRA_HOST = "gibbsdream.test"
SECURITY = {
    "content-security-policy": "default-src 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
TIMEOUT = 30  # seconds any one request may take before the test fails instead of hanging
FOREVER = 200_000  # steps no job here gets near before it is cancelled
MB = 2**20


# ---- the servers ----------------------------------------------------------------------------------------

SERVER_SCRIPT = """
import json, sys
from gibbsdream.web import Limits, bind, create_app, load_models, serve
settings = json.loads(sys.argv[1])
sock = bind("127.0.0.1", 0)
app = create_app(load_models(settings["models"], "cpu"), Limits(**settings["limits"]), allowed_hosts=settings["hosts"])
print(sock.getsockname()[1], flush=True)
serve(app, sock)
"""


class Server:
    """Where a test server listens: ``port``, ``url``, and ``pid`` when it is another process."""

    def __init__(self, port: int, pid: int | None = None, counter=None):
        self.port, self.pid, self.counter = port, pid, counter
        self.origin = f"http://127.0.0.1:{port}"
        self.url = self.origin + "/"

    def client(self, **kwargs) -> "httpx.Client":
        return httpx.Client(base_url=self.origin, timeout=TIMEOUT, **kwargs)

    def peak_rss(self) -> int | None:
        """The server process's peak resident memory in bytes (Linux), or None where unknown."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None


def mask_png(hole: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.where(hole, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def remote(image_model, string_model, tmp_path_factory):  # noqa: F811
    """The app in its own process, in a folder holding mask images named like mask specs."""
    folder = tmp_path_factory.mktemp("hostile-cwd")
    decoy = mask_png(np.eye(SIDE, dtype=bool))  # a valid mask: were it read, the request would succeed
    for name in ("random", "box", "centre", "decoy.png"):
        (folder / name).write_bytes(decoy)
    settings = {
        "models": [str(image_model), str(string_model)],
        "hosts": [EXTRA_HOST],
        "limits": {"max_jobs": 1, "max_upload_bytes": UPLOAD_LIMIT, "max_steps": FOREVER},
    }
    # This checkout's gibbsdream, whatever an editable install elsewhere points at.
    env = {**ENV, "PYTHONPATH": str(Path(gibbsdream.__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, json.dumps(settings)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip().isdigit(), line + process.stderr.read()
        server = Server(int(line), process.pid)
        server.cwd = folder
        yield server
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=60)
    # No request of the battery made the server fail: a 500 would have left a traceback here.
    assert "Traceback" not in errors, errors[-3000:]


class BodyCounter:
    """ASGI wrapper: counts the bytes of request body the wrapped app took from the server."""

    def __init__(self, app):
        self.app, self.read = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@contextmanager
def thread_server(app):
    """Serve ``app`` (wrapped in a :class:`BodyCounter`) with uvicorn in a thread on a free port."""
    import uvicorn

    from gibbsdream.web import bind

    counter = BodyCounter(app)
    sock = bind("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(counter, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Server(sock.getsockname()[1], counter=counter)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def local(image_model, string_model):  # noqa: F811
    from gibbsdream.web import Limits, create_app, load_models

    app = create_app(
        load_models([image_model, string_model], "cpu"),
        Limits(max_jobs=1, max_upload_bytes=UPLOAD_LIMIT, max_steps=FOREVER),
    )
    with thread_server(app) as server:
        yield server


# ---- helpers ----------------------------------------------------------------------------------------------


def assert_headers(response) -> None:
    for name, value in SECURITY.items():
        assert value in response.headers.get(name, ""), (response.status_code, name, dict(response.headers))


def refused(response, status: int) -> str:
    """The one-line error of a refusal with ``status``, which carries the security headers."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert_headers(response)
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message and len(message) < 400, message
    return message


def data_url(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def post(server: Server, path: str, body, **headers) -> "httpx.Response":
    """A same-origin JSON POST, as the page sends it (``body`` bytes are sent as they are)."""
    headers = {"Content-Type": "application/json", "Origin": server.origin, "Sec-Fetch-Site": "same-origin", **headers}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with server.client() as client:
        return client.post(path, content=content, headers=headers)


def raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` bytes as they are; ``(status, whole reply)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        reply = b""
        while len(reply) < 64 * 1024:  # until the server closes (every request here asks it to)
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    return int(reply.split(b" ", 2)[1]), reply


def send_chunked(port: int, path: str, total: int, chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """POST up to ``total`` bytes as a chunked JSON body, stopping as soon as the server answers.

    Returns ``(bytes sent, reply)``. The server may close the connection under the sender (that is
    the point), so a send that fails ends the loop too.
    """
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"%x\r\n" % chunk + b"A" * chunk + b"\r\n"
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head + b'%x\r\n{"data": "\r\n' % len(b'{"data": "'))
        for _ in range(total // chunk):  # bounded: at most total bytes
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            try:
                sock.sendall(piece)
            except OSError:  # reset or broken pipe: the server stopped reading and closed
                break
            sent += chunk
        try:
            while len(reply) < 64 * 1024:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except OSError:
            pass  # a reset after the answer arrived
    return sent, reply


# ---- Host: DNS rebinding ------------------------------------------------------------------------------------


def test_only_this_servers_own_host_names_are_answered(remote):
    port = remote.port
    with remote.client() as client:
        for host in (
            "127.0.0.1",
            f"127.0.0.1:{port}",
            "localhost",
            f"localhost:{port}",
            "LOCALHOST",
            "[::1]",
            f"[::1]:{port}",
            EXTRA_HOST,
            f"{EXTRA_HOST}:{port}",
        ):
            answer = client.get("/api/models", headers={"Host": host})
            assert answer.status_code == 200, (host, answer.text)
            assert_headers(answer)
        for host in (
            "evil.test",
            f"evil.test:{port}",
            "127.0.0.1.evil.test",
            "localhost.evil.test",
            "gibbsdream.test.evil",
            "127.0.0.2",
            "0.0.0.0",
            "[::2]",
            "localhost:port",
            "localhost@evil.test",
            "evil.test#localhost",
        ):
            for path in ("/api/models", "/", "/static/app.js"):
                assert "host name" in refused(client.get(path, headers={"Host": host}), 400), host
        # A rebinding page reads nothing: not the models, not their checkpoint paths.
        answer = client.get("/api/models", headers={"Host": "evil.test"})
        assert list(answer.json()) == ["error"] and "pixels" not in answer.text
        # Nor can it start anything (every method is checked, before the origin is).
        refused(client.post("/api/jobs", json={"model": "words", "steps": 2}, headers={"Host": "evil.test"}), 400)
    # No Host at all (HTTP/1.0) and two Hosts are refused too.
    status, reply = raw_exchange(port, b"GET /api/models HTTP/1.0\r\n\r\n")
    assert status == 400 and b"pixels" not in reply and b"nosniff" in reply
    status, reply = raw_exchange(port, b"GET /api/models HTTP/1.0\r\nHost: 127.0.0.1\r\nHost: evil.test\r\n\r\n")
    assert status == 400 and b"pixels" not in reply


# ---- same origin, JSON only ---------------------------------------------------------------------------------------


def test_state_changing_requests_from_other_origins_are_refused(remote):
    port = remote.port
    mask = {"spec": "centre"}
    assert post(remote, "/api/models/pixels/mask", mask).status_code == 200  # as the page sends it
    for origin in (
        "http://evil.test",
        "null",
        f"http://127.0.0.1:{port + 1 if port < 65535 else 1}",
        f"http://localhost:{port}",
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/path",
        f"http://evil.test@127.0.0.1:{port}",
        "http://127.0.0.1",
        "",
    ):
        message = refused(post(remote, "/api/models/pixels/mask", mask, Origin=origin), 403)
        assert "own page only" in message, origin
    for site in ("cross-site", "same-site", "whatever"):
        assert "own page only" in refused(
            post(remote, "/api/models/pixels/mask", mask, **{"Sec-Fetch-Site": site}), 403
        )
    for site in ("same-origin", "none"):
        assert post(remote, "/api/models/pixels/mask", mask, **{"Sec-Fetch-Site": site}).status_code == 200
    # Without the browser headers (curl, scripts on this machine) the request is taken.
    with remote.client() as client:
        assert client.post("/api/models/pixels/mask", json=mask).status_code == 200
        # What a form or fetch on another site could send unasked: its origin, a "simple" type.
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            headers = {"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site", "Content-Type": kind}
            for path in ("/api/jobs", "/api/models/pixels/upload", "/api/jobs/anything/cancel"):
                refused(client.post(path, content=json.dumps({"model": "words", "steps": 2}), headers=headers), 403)


def test_only_json_bodies_are_read(remote):
    body = json.dumps({"spec": "centre"}).encode()
    for kind in (
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json; charset=latin-1",
        "application/json; charset=utf-8; x=1",
        "text/json",
    ):
        message = refused(post(remote, "/api/models/pixels/mask", body, **{"Content-Type": kind}), 415)
        assert "application/json" in message, kind
    for kind in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        assert post(remote, "/api/models/pixels/mask", body, **{"Content-Type": kind}).status_code == 200, kind
    # A body without any content type is not read either.
    with remote.client() as client:
        refused(client.post("/api/models/pixels/mask", content=body), 415)
        refused(client.post("/api/jobs", content=b""), 415)  # a JSON endpoint without a body says so too


# ---- size: chunked bodies are counted as they are read ----------------------------------------------------


def test_a_huge_chunked_body_is_refused_without_being_read(remote):
    """50 MB offered in 64 KB chunks: the server answers 413 once it has read about its limit and
    closes the connection; its peak memory hardly moves (the old server kept it all, +51 MB)."""
    with remote.client() as client:  # warm up the upload path, so the peak below is the body's alone
        client.post(
            "/api/models/pixels/upload",
            json={"data": data_url(np.zeros((8, 8), np.uint8))},
            headers={"Origin": remote.origin},
        )
    before = remote.peak_rss()
    sent, reply = send_chunked(remote.port, "/api/models/pixels/upload", 50 * MB)
    after = remote.peak_rss()
    head = reply.partition(b"\r\n\r\n")[0].lower()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"connection: close" in head and b"x-content-type-options: nosniff" in head
    assert sent < 20 * MB, sent  # the sender was stopped early (what it got out sat in socket buffers)
    if before is not None:
        print(f"chunked 50 MB offer: {sent / MB:.1f} MB sent, server peak RSS +{(after - before) / MB:.1f} MB")
        assert after - before < 16 * MB, (before, after)
    # A declared length above the limit is refused before any body is sent.
    status, reply = raw_exchange(
        remote.port,
        (
            f"POST /api/models/pixels/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MB}\r\n\r\n"
        ).encode(),
    )
    assert status == 413 and b"connection: close" in reply.lower()
    # The server still answers.
    with remote.client() as client:
        assert client.get("/api/models").status_code == 200


def test_the_app_is_given_at_most_about_the_limit_of_a_chunked_body(local):
    local.counter.read = 0
    sent, reply = send_chunked(local.port, "/api/jobs", 50 * MB)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    print(f"chunked 50 MB offer to /api/jobs: app read {local.counter.read} bytes (limit {BODY_LIMIT}), {sent} sent")
    assert BODY_LIMIT < local.counter.read <= BODY_LIMIT + 512 * 1024


# ---- fields: wrong types are 400s, never 500s ---------------------------------------------------------------------

DIGITS_5000 = "9" * 5000


@pytest.mark.parametrize(
    "raw, words",
    [
        ('{"model": "words", "steps": "\u00b2"}', "steps must be a whole number"),
        ('{"model": "words", "steps": "\u0663"}', "steps must be a whole number"),  # Arabic-Indic 3: a digit, not ASCII
        (f'{{"model": "words", "steps": "{DIGITS_5000}"}}', "steps must be a whole number"),
        (f'{{"model": "words", "steps": {DIGITS_5000}}}', "digits"),
        (f'{{"model": "words", "seed": {"9" * 31}}}', "digits"),
        ('{"model": "words", "steps": NaN}', "NaN"),
        ('{"model": "words", "steps": Infinity}', "Infinity"),
        ('{"model": "words", "chains": -Infinity}', "-Infinity"),
        ('{"model": "words", "temperature": 1e999}', "too large"),
        ('{"model": "words", "temperature": NaN}', "NaN"),
        ('{"model": "words", "temperature": "nan"}', "temperature"),
        ('{"model": "words", "temperature": "inf"}', "temperature"),
        ('{"model": "words", "steps": 5.5}', "steps must be a whole number"),
        ('{"model": "words", "steps": true}', "steps must be a whole number"),
        ('{"model": "words", "steps": [1]}', "steps must be a whole number"),
        ('{"model": "words", "steps": -5}', "steps must be at least 1"),
        ('{"model": "words", "steps": 999999999999999999999}', "above this server's limit"),
        ('{"model": "words", "chains": 1e300}', "chains must be a whole number"),
        ('{"model": "words", "seed": 9223372036854775808}', "seed is"),
        ('{"model": "words", "prefix": {"a": 1}}', "prefix must be text"),
        ('{"model": "words", "init": ["x"]}', "init must be text"),
        (f'{{"model": "words", "prefix": "{"a" * 100_000}"}}', "characters long"),
        ('{"model": "pixels", "image": "test:\u00b2"}', "no built-in image"),
        ('{"model": "pixels", "image": "test:-1"}', "no built-in image"),
        (f'{{"model": "pixels", "image": "test:{DIGITS_5000}"}}', "no built-in image"),
        ('{"model": "pixels", "image": "test:0", "mask": [[0.5]]}', "rows of"),
        ('{"model": "pixels", "image": "test:0", "mask": {"x": 1}}', "mask must be"),
        ('{"model": "pixels", "image": "test:0", "mask": "centre:NaN"}', "finite"),
        (f'{{"model": "pixels", "image": "test:0", "mask": "box:0,0,{"9" * 90},1"}}', "box"),
        ('{"model": "pixels", "image": {"a": 1}}', "data URL"),
        (f'{{"model": "pixels", "image": "data:image/png;base64,{"A" * 400_000}"}}', "larger than this server's limit"),
        ('{"model": ["words"]}', "model must be text"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ('{"model": "words", "steps": 5', "not JSON"),
        ('"words"', "JSON object"),
    ],
)
def test_wrong_fields_are_refused_with_one_line_and_the_headers(remote, raw, words):
    assert words in refused(post(remote, "/api/jobs", raw.encode()), 400)


def test_bytes_that_are_not_utf8_json_are_refused(remote):
    for raw in (b"\xff\xfe\x00{", b'{"model": "\xc3"}', b"\x00" * 100):
        assert "not JSON" in refused(post(remote, "/api/jobs", raw), 400)


def test_no_hostile_value_in_any_field_gives_a_500(remote):
    """Every field of every endpoint, each given each of a list of hostile values: a 4xx with one
    line and the headers, or (for the few that happen to be valid) a job, which is cancelled."""
    hostile = [
        '"\u00b2"',
        f'"{DIGITS_5000}"',
        "NaN",
        "-Infinity",
        "1e308",
        "-1",
        "0",
        "4.5",
        "true",
        "null",
        "[]",
        "{}",
        '""',
        '"\\u0000"',
        f'"{"x" * 5000}"',
        '"../../../../etc/passwd"',
        '"random"',
        "[[1]]",
        '"' + "\\n" * 50 + '"',
    ]
    bases = {
        "/api/jobs": [
            {"model": "words", "chains": 2, "steps": 3},
            {"model": "pixels", "image": "test:0", "mask": "centre", "steps": 3},
        ],
        "/api/models/pixels/mask": [{"spec": "centre", "seed": 1}],
        "/api/models/pixels/upload": [{"data": data_url(np.zeros((8, 8), np.uint8))}],
    }
    fields = [
        "model",
        "steps",
        "seed",
        "chains",
        "temperature",
        "anneal",
        "block",
        "sampler",
        "init",
        "final",
        "prefix",
        "suffix",
        "caption",
        "image",
        "mask",
        "spec",
        "data",
    ]
    asked = 0
    with remote.client() as client:
        for path, bodies in bases.items():
            for base in bodies:
                for field in fields:
                    for value in hostile:
                        body = json.dumps({**base, field: None}).replace(f'"{field}": null', f'"{field}": {value}')
                        answer = client.post(
                            path,
                            content=body.encode(),
                            headers={"Content-Type": "application/json", "Origin": remote.origin},
                        )
                        asked += 1
                        assert answer.status_code < 500, (path, field, value, answer.text[:300])
                        assert_headers(answer)
                        if answer.status_code == 200 and "id" in answer.json():
                            job = answer.json()["id"]
                            client.post(f"/api/jobs/{job}/cancel", headers={"Origin": remote.origin})
                            stop = time.monotonic() + TIMEOUT
                            while client.get(f"/api/jobs/{job}").json()["state"] in ("queued", "running"):
                                assert time.monotonic() < stop
                                time.sleep(0.01)
                        elif answer.status_code != 200:
                            message = answer.json()["error"]
                            assert "\n" not in message and len(message) < 400, (field, value, message)
    assert asked == 4 * len(fields) * len(hostile)


def test_query_parameters_and_paths_are_checked_too(remote):
    with remote.client() as client:
        for since in ("\u00b2", DIGITS_5000, "NaN", "-1e9", "1.5"):
            answer = client.get("/api/jobs/nope", params={"since": since})
            assert answer.status_code in (400, 404) and "\n" not in answer.json()["error"], since
            assert_headers(answer)
        refused(client.get("/nothing-here"), 404)
        refused(client.get("/api/models/nope/images"), 404)
        refused(client.delete("/api/jobs"), 405)
        refused(client.get("/api/jobs"), 405)
        refused(client.post("/api/models/pixels/nothing", json={}, headers={"Origin": remote.origin}), 404)


# ---- masks only from the request -------------------------------------------------------------------------------


def test_a_mask_spec_never_reads_a_file_on_the_server(remote):
    for name in ("random", "box", "centre", "decoy.png"):
        assert (remote.cwd / name).is_file()  # there to be read, were a spec taken for a path
    for spec in (
        "random",
        "box",
        "centre:",
        "decoy.png",
        "./random",
        str(remote.cwd / "decoy.png"),
        "RANDOM",
        " random ",
        "random:",
        "box:",
    ):
        message = refused(post(remote, "/api/models/pixels/mask", {"spec": spec}), 400)
        job = refused(post(remote, "/api/jobs", {"model": "pixels", "image": "test:0", "mask": spec, "steps": 2}), 400)
        if ":" not in spec:
            assert "mask" in message and "mask" in job, spec
    # The forms the page uses still work.
    for spec in ("centre", "centre:0.25", "box:1,1,2,2", "random:0.3"):
        assert post(remote, "/api/models/pixels/mask", {"spec": spec, "seed": 2}).status_code == 200, spec


# ---- uploads: formats, bombs, paths --------------------------------------------------------------------------


def test_only_png_jpeg_gif_bmp_and_webp_are_decoded(remote):
    picture = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        answer = post(remote, "/api/models/pixels/upload", {"data": data_url(picture, fmt)})
        assert answer.status_code == 200, (fmt, answer.text)
    for fmt in ("TIFF", "PPM", "PCX", "ICO", "TGA"):
        message = refused(post(remote, "/api/models/pixels/upload", {"data": data_url(picture, fmt)}), 400)
        assert "not an image this server can read" in message, fmt
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"
    message = refused(
        post(remote, "/api/models/pixels/upload", {"data": "data:image/png;base64," + base64.b64encode(eps).decode()}),
        400,
    )
    assert "not an image this server can read" in message
    # A TIFF as a job's image is refused the same way.
    body = {"model": "pixels", "image": data_url(picture, "TIFF"), "mask": "centre", "steps": 2}
    assert "not an image" in refused(post(remote, "/api/jobs", body), 400)


def test_uploads_beyond_the_byte_and_pixel_limits_are_refused(remote):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)  # ~480 KB as PNG
    answer = post(remote, "/api/models/pixels/upload", {"data": data_url(noise)})
    assert answer.status_code in (400, 413) and "limit" in refused(answer, answer.status_code)
    wide = data_url(np.zeros((2, 5000), dtype=np.uint8))  # small file, too many pixels on a side
    assert "5000x2 pixels" in refused(post(remote, "/api/models/pixels/upload", {"data": wide}), 400)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_is_a_400(local, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # an 11x11 image is now a "bomb"
    for side in (11, 15):  # above the limit, and above twice it (where Pillow raises by itself)
        answer = post(local, "/api/models/pixels/upload", {"data": data_url(np.zeros((side, side), np.uint8))})
        assert "too large to open" in refused(answer, 400), side


def test_paths_outside_the_static_folder_are_not_served(remote):
    port = remote.port
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2fapp.py",
        "/static/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "/static/..\\app.py",
        "/static/%5c..%5capp.py",
        "/../../etc/passwd",
    ):
        status, reply = raw_exchange(
            port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        assert status in (400, 404), (path, reply[:200])
        assert b"def create_app" not in reply and b"root:" not in reply, path
        assert b"nosniff" in reply, path


# ---- jobs: the limit counts uploads; ids ---------------------------------------------------------------------------


def test_an_upload_being_decoded_holds_a_job_place(local, monkeypatch):
    """With max_jobs=1, an upload held half-way (by an event, not by timing) makes every other
    upload and job wait; once it is done they run again."""
    import gibbsdream.web.app as web_app

    decode = web_app.image_to_states
    entered, release = threading.Event(), threading.Event()

    def held(*args):
        entered.set()
        assert release.wait(TIMEOUT), "the test never released the upload"
        return decode(*args)

    monkeypatch.setattr(web_app, "image_to_states", held)
    picture = {"data": data_url(np.zeros((8, 8), np.uint8))}
    answers = []
    first = threading.Thread(target=lambda: answers.append(post(local, "/api/models/pixels/upload", picture)))
    first.start()
    try:
        assert entered.wait(TIMEOUT), "the upload never reached the decoder"
        message = refused(post(local, "/api/models/pixels/upload", picture), 429)
        assert "1 uploaded image is being read" in message
        refused(post(local, "/api/jobs", {"model": "words", "chains": 2, "steps": 2}), 429)
        refused(post(local, "/api/jobs", {"model": "pixels", "image": "test:0", "steps": 2}), 429)
        refused(post(local, "/api/jobs", {"model": "pixels", "image": picture["data"], "steps": 2}), 429)
        assert post(local, "/api/models/pixels/mask", {"spec": "centre"}).status_code == 200  # no place needed
    finally:
        release.set()
        first.join(TIMEOUT)
    assert answers and answers[0].status_code == 200, answers
    monkeypatch.setattr(web_app, "image_to_states", decode)
    # The place is free again; and a running job keeps uploads out in turn.
    job = post(local, "/api/jobs", {"model": "words", "chains": 2, "steps": FOREVER})
    assert job.status_code == 200, job.text
    job = job.json()["id"]
    try:
        assert "1 jobs are running" in refused(post(local, "/api/models/pixels/upload", picture), 429)
    finally:
        post(local, f"/api/jobs/{job}/cancel", b"")
    with local.client() as client:
        stop = time.monotonic() + TIMEOUT
        while client.get(f"/api/jobs/{job}").json()["state"] in ("queued", "running"):
            assert time.monotonic() < stop
            time.sleep(0.01)
    assert post(local, "/api/models/pixels/upload", picture).status_code == 200


def test_job_ids_cannot_be_guessed(local):
    ids = []
    with local.client() as client:
        for _ in range(3):
            answer = post(local, "/api/jobs", {"model": "words", "chains": 2, "steps": 2})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
            stop = time.monotonic() + TIMEOUT
            while client.get(f"/api/jobs/{ids[-1]}").json()["state"] in ("queued", "running"):
                assert time.monotonic() < stop
                time.sleep(0.01)
        assert len(set(ids)) == 3 and all(len(i) >= 16 for i in ids)  # 96 random bits each
        for job in ids:
            near = job[:-1] + ("A" if job[-1] != "A" else "B")
            refused(client.get(f"/api/jobs/{near}"), 404)
            refused(client.post(f"/api/jobs/{near}/cancel", headers={"Origin": local.origin}), 404)


# ---- a bug still answers with one line and the headers -------------------------------------------------------------


def test_an_unexpected_error_is_a_500_with_one_line_and_the_headers(local, monkeypatch):
    from gibbsdream.web.app import ServedModel

    def broken(self):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(ServedModel, "describe", broken)
    with local.client() as client:
        message = refused(client.get("/api/models"), 500)
    assert "RuntimeError" in message and "a bug" not in message


def test_inpaint_mask_reads_files_only_when_asked(tmp_path, monkeypatch):
    """The keyword the web page relies on (shared code, data/masks.py): by default a spec that is
    a file's name is read, as the command line wants; with files=False it never is."""
    from gibbsdream.data.masks import inpaint_mask
    from gibbsdream.errors import UsageError

    monkeypatch.chdir(tmp_path)
    hole = np.zeros((SIDE, SIDE), dtype=bool)
    hole[:3, :2] = True
    for name in ("random", "box", "mask.png"):
        (tmp_path / name).write_bytes(mask_png(hole))
        known = inpaint_mask(name, (1, SIDE, SIDE))
        assert np.array_equal(~known[0].numpy(), hole), name
        with pytest.raises(UsageError, match="cannot read mask spec"):
            inpaint_mask(name, (1, SIDE, SIDE), files=False)
    assert inpaint_mask("box:0,0,2,3", (1, SIDE, SIDE), files=False).equal(inpaint_mask("box:0,0,2,3", (1, SIDE, SIDE)))
