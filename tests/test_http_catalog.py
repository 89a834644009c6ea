"""The same world served over HTTP (range requests, as COGs are read from the cloud) gives the same dataset."""

from __future__ import annotations

import functools
import json
import threading
from http.server import ThreadingHTTPServer

import pytest
from RangeHTTPServer import RangeRequestHandler

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import build_dataset


class _QuietRangeHandler(RangeRequestHandler):
    requests_seen: list[str] = []

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        self.requests_seen.append(f"{self.command} {self.path} {self.headers.get('Range', '')}")


@pytest.fixture
def served_world(small_world):
    """A loopback HTTP file server with Range support over the small world's folder."""
    handler = functools.partial(_QuietRangeHandler, directory=str(small_world.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _QuietRangeHandler.requests_seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/{small_world.name}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_served_catalog_gives_the_same_fingerprint(served_world, small_preset, small_dataset, tmp_path):
    out = tmp_path / "http"
    build_dataset(small_preset.with_overrides(catalog=served_world), out, workers=2, progress=False)
    local = json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]
    ds = load_dataset(out)
    assert ds.fingerprint == local
    hrefs = [href for h in ds.samples["hrefs"] for href in json.loads(h).values()]
    assert all(h.startswith("http://127.0.0.1:") for h in hrefs)
    # COG chips are fetched with HTTP range requests, not whole-file downloads.
    ranged = [r for r in _QuietRangeHandler.requests_seen if r.startswith("GET") and ".tif" in r and "bytes=" in r]
    assert ranged, _QuietRangeHandler.requests_seen[:5]
