"""A loopback HTTP server with injectable faults, for the remote-I/O tests (tests/test_faults.py).

It serves a folder with HTTP Range support (as cloud storage serves COGs) and can answer chosen
requests with a burst of error statuses (429 with ``Retry-After``, 503, ...), a response delayed
past the client's timeout, or a truncated body. For signed-catalogue tests it also plays
Planetary Computer: a SAS token endpoint (``/api/sas/v1/token/ACCOUNT/CONTAINER``, where
``planetary_computer`` is pointed with ``PC_SDK_SAS_URL``) and blob storage reached through it as
an HTTP proxy (``GDAL_HTTP_PROXY``), so ``http://ACCOUNT.blob.core.windows.net/...`` hrefs are
signed by the real ``planetary_computer.sign`` and refused with 403 once their token is too old.

Every server instance serves under a path prefix of its own (``url`` ends with it). GDAL keeps a
process-wide cache of what it learnt about a URL, failed opens included; a later server that the
OS gives the same port must not be answered from that cache with an earlier test's fault.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from RangeHTTPServer import RangeRequestHandler

TOKEN_PATH = "/api/sas/v1/token"
BLOB_ACCOUNT = "ackdfaults"
BLOB_CONTAINER = "world"
BLOB_BASE = f"http://{BLOB_ACCOUNT}.blob.core.windows.net/{BLOB_CONTAINER}"
EXPIRED_BODY = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>'
                b"Server failed to authenticate the request. Signed expiry time has passed.</Message></Error>")


@dataclass
class Fault:
    """A fault for the requests whose path (without the query) matches ``pattern`` (a regex).

    Args:
        pattern: regular expression searched in the request path.
        kind: ``"status"`` (answer ``status``), ``"delay"`` (answer after ``delay`` seconds) or
            ``"truncate"`` (send the headers and half the body, then close the connection).
        status: the status of ``"status"`` faults.
        count: faulty answers in the burst; None: every matching request, for good.
        after: matching requests answered normally before the burst starts.
        retry_after: ``Retry-After`` header value of ``"status"`` faults.
        methods: the HTTP methods it applies to.
    """

    pattern: str
    kind: str = "status"
    status: int = 503
    count: int | None = 1
    after: int = 0
    delay: float = 0.0
    retry_after: str | None = None
    methods: tuple[str, ...] = ("GET",)
    seen: int = 0
    fired: int = 0
    hits: list[str] = field(default_factory=list)

    def take(self, method: str, path: str) -> bool:
        """Whether this request gets the fault (counts it; call under the server's lock)."""
        if method not in self.methods or not re.search(self.pattern, path):
            return False
        self.seen += 1
        if self.seen <= self.after or (self.count is not None and self.fired >= self.count):
            return False
        self.fired += 1
        self.hits.append(path)
        return True


class FaultServer:
    """The server; a context manager that starts it on 127.0.0.1 and stops it.

    Args:
        root: folder served at ``/``.
        blob_root: folder served as ``BLOB_BASE`` through the proxy (None: no blob storage).
        token_uses: blob requests a SAS token is honoured for; later ones are refused with 403, as
            an expired token is (None: no token checks). Counting requests rather than seconds
            makes tokens expire at the same points of a build however loaded the machine is.
        port: the port to listen on (0: one the OS picks).
    """

    def __init__(self, root: Path, *, blob_root: Path | None = None, token_uses: int | None = None,
                 port: int = 0) -> None:
        self.root = Path(root)
        self.port = port
        self.prefix = f"/s{secrets.token_hex(6)}"  # see the module docstring
        self.blob_root = Path(blob_root) if blob_root else None
        self.token_uses = token_uses
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every answered request
        self.tokens: dict[str, int] = {}  # sig -> blob requests it was presented with
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()

    def statuses(self, pattern: str = "") -> list[int]:
        """Statuses answered to requests whose path matches ``pattern``."""
        with self.lock:
            return [status for _, path, status in self.log if re.search(pattern, path)]

    def __enter__(self) -> FaultServer:
        handler = functools.partial(_Handler, self)
        self._server = _QuietServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def issue_token(self) -> dict:
        now = datetime.now(timezone.utc)
        sig = secrets.token_hex(8)
        with self.lock:
            self.tokens[sig] = 0
        # The token claims PC's usual 45 minutes; the server refuses it much earlier (token_uses).
        expiry = now + timedelta(minutes=45)
        token = f"st={now:%Y-%m-%dT%H:%M:%SZ}&se={expiry:%Y-%m-%dT%H:%M:%SZ}&sp=rl&sv=2024-05-04&sr=c&sig={sig}"
        return {"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token}

    def token_ok(self, query: str) -> bool:
        sig = parse_qs(query).get("sig", [""])[0]
        with self.lock:
            if sig not in self.tokens:
                return False
            self.tokens[sig] += 1
            return self.tokens[sig] <= self.token_uses


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # GDAL opens several connections at once per reading thread; socketserver's default backlog of 5
    # can refuse some on a loaded machine, which a test would read as a fault it never injected.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that gave up is expected here


class _Handler(RangeRequestHandler):
    def __init__(self, owner: FaultServer, *args, **kwargs) -> None:
        self.owner = owner
        super().__init__(*args, directory=str(owner.root), **kwargs)

    def log_message(self, format, *args) -> None:  # the base class signature; requests are in .log
        pass

    def log_request(self, code="-", size="-") -> None:
        with self.owner.lock:
            self.owner.log.append((self.command, self._split()[0], int(code)))

    def _split(self) -> tuple[str, str, bool]:
        """(path, query, is_blob) of the request, the path without the server's prefix; proxy
        requests carry the whole URL. A path outside the prefix comes back as it is."""
        parts = urlsplit(self.path)
        blob = bool(parts.netloc) and BLOB_BASE.startswith(f"http://{parts.netloc}/")
        path = parts.path
        if not blob and path.startswith(self.owner.prefix + "/"):
            path = path[len(self.owner.prefix):]
        return path, parts.query, blob

    def translate_path(self, path: str) -> str:
        path, _, blob = self._split()
        if blob:
            relative = path.removeprefix(f"/{BLOB_CONTAINER}/")
            return str(self.owner.blob_root / relative)
        if not urlsplit(self.path).path.startswith(self.owner.prefix + "/"):
            return str(self.owner.root / "no-such-file-outside-the-prefix")  # answered 404
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self._intercept():
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if self._intercept():
            return
        super().do_HEAD()

    def _intercept(self) -> bool:
        """Answer the request here (token endpoint, refused token, fault); False: serve the file.

        Faults apply to the token endpoint too (status and delay faults), before any token check."""
        path, query, blob = self._split()
        token = path.startswith(TOKEN_PATH + "/")
        if not (blob and self.owner.token_uses is not None):
            with self.owner.lock:
                fault = next((f for f in self.owner.faults if f.take(self.command, path)), None)
            if fault is not None and self._fault(fault):
                return True
        if token:
            self._send(200, json.dumps(self.owner.issue_token()).encode(), "application/json")
            return True
        if blob and self.owner.token_uses is not None:
            if not self.owner.token_ok(query):
                self._send(403, EXPIRED_BODY, "application/xml")
                return True
            with self.owner.lock:
                fault = next((f for f in self.owner.faults if f.take(self.command, path)), None)
            return fault is not None and self._fault(fault)
        return False

    def _fault(self, fault: Fault) -> bool:
        """Answer with ``fault``; False when the request is then served normally (a delay)."""
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(fault.status, f"fault: {fault.status}".encode(), "text/plain", headers)
        elif fault.kind == "delay":
            time.sleep(fault.delay)  # the client has given up by now; answering fails quietly
            return False
        elif fault.kind == "truncate":
            self._truncated()
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        return True

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _truncated(self) -> None:
        """The normal headers (full Content-Length), half the body, then a closed connection."""
        source = self.send_head()
        if source is None:
            return
        with source:
            if self.range:
                first, last = self.range
                source.seek(first)
                data = source.read((last - first + 1) if last is not None else -1)
            else:
                data = source.read()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


def blob_catalog(catalog: Path, dest: Path) -> Path:
    """A copy of a static catalog's JSON under ``dest`` whose asset hrefs point into blob storage.

    Assets ``root/x/y.tif`` become ``BLOB_BASE/x/y.tif``; the COGs themselves are not copied
    (serve the original folder as the server's ``blob_root``).
    """
    root = catalog.parent
    for source in root.rglob("*.json"):
        doc = json.loads(source.read_text())
        for asset in doc.get("assets", {}).values():
            absolute = (source.parent / asset["href"]).resolve()
            asset["href"] = f"{BLOB_BASE}/{absolute.relative_to(root.resolve()).as_posix()}"
        target = dest / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc))
    return dest / catalog.name
