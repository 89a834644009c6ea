"""A real STAC API on loopback for tests: PostgreSQL + PostGIS + pgstac behind stac-fastapi-pgstac.

This is the stack Planetary Computer serves its STAC API with. `StacApiServer` starts a
throwaway PostgreSQL cluster, installs the pgstac schema, loads the collections and items of a
static catalog on disk, serves the catalog's asset files over HTTP (with Range requests, as COGs
are read from the cloud) and starts the API with uvicorn, everything bound to 127.0.0.1.

The server side runs in its own virtual environment (``.ci/stac-venv``, made by
``.ci/install-stac-server``): its dependencies must not leak into the project's, e.g. orjson
changes how pystac writes JSON.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from RangeHTTPServer import RangeRequestHandler

REPO = Path(__file__).resolve().parents[1]
REQUIRE_ENV = "ACKD_BENCH_REQUIRE_STAC_SERVER"  # "1": a missing stack fails the tests instead of skipping them
PYTHON_ENV = "ACKD_BENCH_STAC_PYTHON"  # the Python of the server's venv, default .ci/stac-venv/bin/python
PG_BIN_ENV = "ACKD_BENCH_PG_BIN"  # PostgreSQL's bin folder (initdb, postgres), default: Debian's newest
INSTALL_HINT = "run `bash .ci/install-stac-server` (as root or with sudo) to install the stack"


class StackMissing(RuntimeError):
    """A binary or package the server needs is not installed; the message says which."""


@dataclass(frozen=True)
class Toolchain:
    """Where the server's programs are: PostgreSQL's bin folder and the Python that runs pgstac and the API."""

    pg_bin: Path
    python: Path

    @property
    def pypgstac(self) -> Path:
        return self.python.parent / "pypgstac"


def stack_required() -> bool:
    """True where a missing stack must fail the tests rather than skip them (CI sets the variable)."""
    return os.environ.get(REQUIRE_ENV) == "1"


def find_toolchain() -> Toolchain:
    """The installed stack, or `StackMissing` naming what is absent and how to install it."""
    python = Path(os.environ.get(PYTHON_ENV, REPO / ".ci" / "stac-venv" / "bin" / "python"))
    if not python.is_file():
        raise StackMissing(f"no STAC server venv at {python} ({PYTHON_ENV}); {INSTALL_HINT}")
    probe = subprocess.run([str(python), "-c", "import pypgstac, stac_fastapi.pgstac.app, uvicorn"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise StackMissing(f"{python} lacks pypgstac, stac-fastapi-pgstac or uvicorn ({why}); {INSTALL_HINT}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackMissing(f"root cannot run initdb and there is no 'postgres' user; {INSTALL_HINT}") from None
    return Toolchain(pg_bin=_postgres_bin(), python=python)


def _postgres_bin() -> Path:
    if PG_BIN_ENV in os.environ:
        candidates = [Path(os.environ[PG_BIN_ENV])]
    else:  # Debian's layout, newest version first
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                            if p.parent.name.isdigit() else 0, reverse=True)
    for bindir in candidates:
        if not all((bindir / name).is_file() for name in ("initdb", "postgres", "pg_isready", "pg_config")):
            continue
        share = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True).stdout
        if (Path(share.strip()) / "extension" / "postgis.control").is_file():
            return bindir
    raise StackMissing(f"no PostgreSQL with PostGIS found (looked in {', '.join(map(str, candidates)) or 'none'};"
                       f" {PG_BIN_ENV} overrides); {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _QuietRangeHandler(RangeRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


class StacApiServer:
    """PostgreSQL + pgstac + stac-fastapi-pgstac + a Range file server, all on 127.0.0.1.

    Use as a context manager; everything started is stopped on exit, also after a failed start.

    Args:
        catalog_json: a static STAC catalog whose child collections hold the items to load.
        toolchain: where the stack is installed (`find_toolchain`).

    Attributes:
        url: the API root, ``http://127.0.0.1:PORT/``.
        files_url: where the catalog's files are served; the loaded items' asset hrefs point here.
        loaded: ``{"collections": [id, ...], "items": [(collection, id), ...]}`` as loaded.
    """

    def __init__(self, catalog_json: Path, toolchain: Toolchain) -> None:
        self.catalog_json = Path(catalog_json)
        self.tools = toolchain
        self.url = ""
        self.files_url = ""
        self.loaded: dict[str, list] = {}
        self._tmp: Path | None = None
        self._files: ThreadingHTTPServer | None = None
        self._files_thread: threading.Thread | None = None
        self._postgres: subprocess.Popen | None = None
        self._api: subprocess.Popen | None = None

    def __enter__(self) -> StacApiServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        # Not pytest's tmp_path: its folders are private to the user, and the cluster runs as postgres.
        self._tmp = Path(tempfile.mkdtemp(prefix="ackd-pgstac-"))
        self._start_file_server()
        pg_port = self._start_postgres()
        dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
        self._run([str(self.tools.pypgstac), "migrate", "--dsn", dsn])
        for kind, path in zip(("collections", "items"), self._write_ndjson()):
            self._run([str(self.tools.pypgstac), "load", kind, str(path), "--dsn", dsn, "--method", "insert"])
        self._start_api(pg_port)

    def _start_file_server(self) -> None:
        handler = functools.partial(_QuietRangeHandler, directory=str(self.catalog_json.parent))
        self._files = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._files_thread = threading.Thread(target=self._files.serve_forever, daemon=True)
        self._files_thread.start()
        self.files_url = f"http://127.0.0.1:{self._files.server_address[1]}"

    def _as_postgres(self, args: list[str]) -> list[str]:
        # initdb refuses to run as root; the cluster then belongs to the postgres user.
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def _start_postgres(self) -> int:
        """A fresh cluster in the temp folder (socket there too, TCP on 127.0.0.1 only); its port."""
        if os.geteuid() == 0:
            shutil.chown(self._tmp, user="postgres")
        pg = self.tools.pg_bin
        self._run(self._as_postgres([str(pg / "initdb"), "-D", str(self._tmp / "pgdata"), "-A", "trust",
                                     "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"]))
        for _ in range(3):  # another process may take the free port before the server binds it
            port = _free_port()
            with open(self._tmp / "postgres.log", "ab") as log:
                # Our own child (pg_ctl would daemonise it), so stopping it also reaps it.
                self._postgres = subprocess.Popen(self._as_postgres(
                    [str(pg / "postgres"), "-D", str(self._tmp / "pgdata"), "-p", str(port), "-k", str(self._tmp),
                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]), stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while self._postgres.poll() is None and time.monotonic() < deadline:
                if subprocess.run([str(pg / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0:
                    return port
                time.sleep(0.1)
            self._stop_postgres()
        raise RuntimeError(f"PostgreSQL did not start:\n{self._log_tail('postgres.log')}")

    def _write_ndjson(self) -> tuple[Path, Path]:
        """The catalog's collections and items as NDJSON files, asset hrefs pointing at the file server.

        The JSON is loaded as written on disk (not through pystac, which would migrate fields),
        so the API serves exactly what the static catalog holds.
        """
        root = self.catalog_json.parent.resolve()
        catalog = json.loads(self.catalog_json.read_text())
        collections, items = [], []
        for link in (lk for lk in catalog["links"] if lk["rel"] == "child"):
            coll_path = (self.catalog_json.parent / link["href"]).resolve()
            coll = json.loads(coll_path.read_text())
            for item_link in (lk for lk in coll["links"] if lk["rel"] == "item"):
                item_path = (coll_path.parent / item_link["href"]).resolve()
                item = json.loads(item_path.read_text())
                for asset in item["assets"].values():
                    local = (item_path.parent / asset["href"]).resolve().relative_to(root)
                    asset["href"] = f"{self.files_url}/{local.as_posix()}"
                item["links"], item["collection"] = [], coll["id"]  # the API writes its own links
                items.append(item)
            coll["links"] = []
            collections.append(coll)
        paths = self._tmp / "collections.ndjson", self._tmp / "items.ndjson"
        for path, records in zip(paths, (collections, items)):
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        self.loaded = {"collections": [c["id"] for c in collections],
                       "items": [(i["collection"], i["id"]) for i in items]}
        return paths

    def _start_api(self, pg_port: int) -> None:
        port = _free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._tmp),
               "PGHOST": "127.0.0.1", "PGPORT": str(pg_port), "PGUSER": "postgres", "PGPASSWORD": "unused",
               "PGDATABASE": "postgres", "DB_MIN_CONN_SIZE": "1", "DB_MAX_CONN_SIZE": "4"}
        with open(self._tmp / "api.log", "wb") as log:
            # stac_fastapi.pgstac.app has no ready `app` in 7.x: the factory builds it.
            self._api = subprocess.Popen(
                [str(self.tools.python), "-m", "uvicorn", "--factory", "stac_fastapi.pgstac.app:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self._tmp,
            )
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._api.poll() is not None:
                raise RuntimeError(f"the STAC API exited ({self._api.returncode}):\n{self._log_tail('api.log')}")
            try:
                with urllib.request.urlopen(self.url + "collections", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"the STAC API did not answer on {self.url} within 60 s:\n{self._log_tail('api.log')}")

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, capture_output=True, text=True, cwd=self._tmp, timeout=300)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{output}")

    def _log_tail(self, name: str) -> str:
        path = self._tmp / name if self._tmp else None
        return path.read_text(errors="replace")[-3000:] if path and path.is_file() else f"(no {name})"

    def stop(self) -> None:
        """Stop the API, the cluster and the file server; remove the temp folder. Safe to call twice."""
        if self._api is not None:
            self._api.terminate()
            try:
                self._api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._api.kill()
                self._api.wait()
            self._api = None
        self._stop_postgres()
        if self._files is not None:
            self._files.shutdown()
            self._files.server_close()
            self._files_thread.join()
            self._files = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _stop_postgres(self) -> None:
        if self._postgres is None:
            return
        pid_file = self._tmp / "pgdata" / "postmaster.pid"
        if self._postgres.poll() is None and pid_file.is_file():
            # Signal the postmaster itself, not the runuser wrapper: SIGINT is the "fast" shutdown.
            postmaster = int(pid_file.read_text().split()[0])
            os.kill(postmaster, signal.SIGINT)
            try:
                self._postgres.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(postmaster, signal.SIGKILL)
        if self._postgres.poll() is None:
            self._postgres.kill()
        self._postgres.wait()
        self._postgres = None
