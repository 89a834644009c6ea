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


def test_each_source_from_its_own_catalogue_through_the_cli(served_world, small_world, small_preset, small_dataset,
                                                            tmp_path):
    """`--catalog URL --catalog labels=URL2` (issue 16): imagery from the directory, land cover over HTTP; the
    same chips, so the same fingerprint, and the manifest records which catalogue served each source."""
    from click.testing import CliRunner

    from ackd_bench.benchmark.cli import main

    preset_file = tmp_path / "preset.json"
    preset_file.write_text(json.dumps(small_preset.to_dict()))
    out = tmp_path / "split-sources"
    result = CliRunner().invoke(main, ["build-dataset", "--preset", str(preset_file), "--catalog", str(small_world),
                                       "--catalog", f"labels={served_world}", "--out", str(out), "--quiet",
                                       "--scheduler", "threads"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert ds.fingerprint == load_dataset(small_dataset).fingerprint
    provenance = ds.manifest["provenance"]
    assert provenance["catalogs"]["labels"] == served_world
    assert provenance["catalogs"]["ms"] == provenance["catalogs"]["rgb"] == str(small_world)
    # the land cover was read over HTTP, the imagery was not
    seen = _QuietRangeHandler.requests_seen
    assert any("esa-worldcover" in r for r in seen) and not any("naip" in r or "sentinel-2" in r for r in seen)


def test_catalogue_options_are_checked(small_preset):
    from ackd_bench.curation.presets import PresetError

    with pytest.raises(PresetError, match="unknown source 'sar'"):
        small_preset.with_catalogs({"sar": "http://127.0.0.1:1/stac"})
    # a URL with '=' in it is one catalogue for every source, not a source name
    url = "http://127.0.0.1:1/stac?token=abc"
    redirected = small_preset.with_catalogs({"": url})
    assert all(redirected.source_catalog(s)[0] == url for s in ("ms", "rgb", "labels"))
