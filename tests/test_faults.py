"""Remote I/O under faults: a real loopback server injects 429/503 bursts, stalls, truncated bodies
and expired SAS tokens; builds must give the clean dataset or list exactly the chips they lost."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from fault_server import BLOB_ACCOUNT, BLOB_CONTAINER, TOKEN_PATH, Fault, FaultServer, blob_catalog
from rasterio.windows import Window

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import REJECTS_FILE, build_dataset
from ackd_bench.curation.reading import gdal_env
from ackd_bench.curation.remote import Remote, RemoteError, RetryPolicy
from ackd_bench.curation.stac import CatalogError

# Tiny waits keep the tests fast. The timeout must stay well above a loopback request on a machine
# loaded by other work (a 1.5 s timeout was once hit there, turning a 503 into a timeout), and a
# stall well past it.
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.5, timeout=6.0)
STALL = 15.0  # seconds a delayed response waits: past FAST.timeout
S2 = "/sentinel-2-l2a/"


def _fingerprint(path) -> str:
    return json.loads((path / "dataset.json").read_text())["fingerprint"]


def _read_block(href: str) -> np.ndarray:
    """A window past the COG header, so that reading it takes a range request of its own."""
    with rasterio.open(href) as src:
        return src.read(1, window=Window(256, 256, 32, 32))


@pytest.fixture
def served(small_world):
    with FaultServer(small_world.parent) as server:
        yield server


@pytest.fixture
def cog(served, small_world):
    """(unsigned URL, path pattern, expected block) of one Sentinel-2 band on the server."""
    tif = min(small_world.parent.rglob("B04.tif"))
    relative = tif.relative_to(small_world.parent).as_posix()
    return f"{served.url}/{relative}", relative.replace(".", r"\."), _read_block(str(tif))


# What GDAL 3.10 reports, and so how each fault is classified: a failed HEAD at open names the
# status or curl error ("HTTP response code: 503", "CURL error: Operation timed out ..."); a failed
# range GET surfaces as "not recognized as being in a supported file format" or "Read failed",
# after GDAL itself re-sent it (2-3 GETs in all), and the funnel's 1-byte probe asks the server.
# The bursts are long enough to outlast GDAL's own re-sends and reach the probe.
@pytest.mark.parametrize("fault, reason, status", [
    (Fault("", status=429, count=3, retry_after="0"), "http-429", 429),
    (Fault("", status=503, count=3), "http-503", 503),
    (Fault("", status=503, methods=("HEAD",)), "http-503", 503),
    (Fault("", kind="delay", delay=STALL, methods=("HEAD",)), "timeout", None),
    # The server answers the probe, so the broken transfer is all there is to report.
    (Fault("", kind="truncate", count=3, after=1), "interrupted", None),
], ids=["429-retry-after", "503-burst", "503-at-open", "stall-at-open", "truncated-body"])
def test_transient_fault_is_classified_and_retried(served, cog, fault, reason, status):
    url, pattern, expected = cog
    fault.pattern = pattern
    served.add(fault)
    retried = []
    with gdal_env(FAST):
        got = Remote(policy=FAST).read(url, _read_block, retried=retried)
    assert np.array_equal(got, expected)
    assert fault.fired == (fault.count or 1)
    assert retried and {r["reason"] for r in retried} == {reason}, retried
    assert {r["status"] for r in retried} == {status}
    assert all(r["wait"] <= FAST.max_delay for r in retried)


@pytest.mark.parametrize("status, reason, tries", [(503, "http-503", FAST.attempts), (404, "not-found", 1),
                                                   (403, "forbidden", 1)])
def test_permanent_fault_raises_with_every_attempt(served, cog, status, reason, tries):
    url, pattern, _ = cog
    served.add(Fault(pattern, status=status, count=None, methods=("GET", "HEAD")))
    with gdal_env(FAST), pytest.raises(RemoteError) as info:
        Remote(policy=FAST).read(url, _read_block)
    err = info.value
    assert err.url == url and err.failure.reason == reason and err.failure.status == status
    assert [a["status"] for a in err.attempts] == [status] * tries
    # Every attempt reached the server: GDAL's cache of the failed open did not answer for it.
    seen = served.statuses(pattern)
    assert set(seen) == {status} and len(seen) >= tries


def test_a_later_server_on_the_same_port_is_not_answered_from_gdals_cache(small_world):
    """GDAL remembers a failed open of a URL for the rest of the process; the fault server's per-instance
    prefix keeps one test's permanent fault from answering for a later test's server on a reused port."""
    tif = min(small_world.parent.rglob("B04.tif"))
    relative = tif.relative_to(small_world.parent).as_posix()
    with FaultServer(small_world.parent) as first:
        first.add(Fault(relative.replace(".", r"\."), status=404, count=None, methods=("GET", "HEAD")))
        with gdal_env(FAST), pytest.raises(RemoteError, match="not-found"):
            Remote(policy=FAST).read(f"{first.url}/{relative}", _read_block)
        port = first._server.server_address[1]
    with FaultServer(small_world.parent, port=port) as second:  # no faults now
        with gdal_env(FAST):
            got = Remote(policy=FAST).read(f"{second.url}/{relative}", _read_block)
        assert second.statuses() and set(second.statuses()) <= {200, 206}
    assert np.array_equal(got, _read_block(str(tif)))


def test_transient_faults_during_a_build_give_the_clean_dataset(served, small_world, small_preset, small_dataset,
                                                                tmp_path):
    faults = [
        # after=0: demo world v2's small chips and 256 px COG blocks need few requests per SCL file
        # (GDAL caches what it fetched), so a later threshold may never be reached.
        served.add(Fault(S2 + r"S2B[^/]*/SCL\.tif$", status=429, count=3, after=0, retry_after="0")),
        served.add(Fault(r"/B04\.tif$", status=503, count=3, after=10)),
        # after=0: how many HEADs GDAL sends per file varies with its stat cache and thread timing, so a
        # later threshold may never be reached; the first HEADs (and their retries) always happen.
        served.add(Fault(r"/B08\.tif$", status=503, count=2, after=0, methods=("HEAD",))),
        served.add(Fault(r"/B11\.tif$", kind="delay", delay=STALL, after=4)),
        served.add(Fault(r"/naip/.*\.tif$", kind="truncate", count=2, after=6)),
        served.add(Fault(r"/naip/[^/]+/[^/]+\.json$", status=503, count=2)),  # STAC items of a static catalog
        served.add(Fault(r"/esa-worldcover/collection\.json$", status=429, retry_after="0")),
    ]
    out = tmp_path / "flaky"
    build_dataset(small_preset.with_overrides(catalog=f"{served.url}/{small_world.name}"), out,
                  scheduler="threads", workers=2, progress=False, retry=FAST)
    assert [f.fired for f in faults] == [f.count for f in faults]
    assert _fingerprint(out) == _fingerprint(small_dataset)
    rejects = pd.read_parquet(out / REJECTS_FILE)
    assert not (rejects["kind"] == "read").any()
    # The QA rejections are the clean build's, chip for chip.
    clean = pd.read_parquet(small_dataset / REJECTS_FILE)
    assert rejects[["candidate_id", "reason"]].equals(clean[["candidate_id", "reason"]])


# planetary_computer 1.0 declares its pydantic models with a class-based Config (deprecated in pydantic 2).
@pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated:DeprecationWarning")
def test_expired_sas_tokens_are_renewed(small_world, small_preset, small_dataset, tmp_path, monkeypatch):
    """The real planetary_computer signing path, its token endpoint and blob storage on loopback."""
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    catalog = blob_catalog(small_world, tmp_path / "blob-catalog")
    # Each token is refused after 200 blob requests: about 5 expire during the build (≈1,100 blob
    # requests), and a re-signed read (a few dozen requests at most) always finishes on its token.
    with FaultServer(catalog.parent, blob_root=small_world.parent, token_uses=200) as server:
        monkeypatch.setenv("GDAL_HTTP_PROXY", server.proxy)  # blob hosts resolve to the server
        monkeypatch.setenv("PC_SDK_SAS_URL", server.url + TOKEN_PATH)  # for fresh worker processes
        monkeypatch.setattr(Settings.get(), "sas_url", server.url + TOKEN_PATH)
        monkeypatch.setattr(sas, "TOKEN_CACHE", {})
        out = tmp_path / "signed"
        build_dataset(small_preset.with_overrides(catalog=f"{server.url}/{catalog.name}", sign=True), out,
                      scheduler="threads", workers=2, progress=False, retry=FAST)
        refused = server.statuses(f"^/{BLOB_CONTAINER}/").count(403)
        issued = len(server.tokens)
    assert _fingerprint(out) == _fingerprint(small_dataset)
    assert refused > 0 and issued > 1, (refused, issued)
    # The build's tokens came from planetary_computer's own cache, keyed by our endpoint.
    assert list(sas.TOKEN_CACHE) == [f"{server.url}{TOKEN_PATH}/{BLOB_ACCOUNT}/{BLOB_CONTAINER}"]
    assert not (pd.read_parquet(out / REJECTS_FILE)["kind"] == "read").any()
    hrefs = [h for row in load_dataset(out).samples["hrefs"] for h in json.loads(row).values()]
    assert all(h.startswith(f"http://{BLOB_ACCOUNT}.blob.core.windows.net/") and "?" not in h for h in hrefs)


def test_a_file_that_always_fails_costs_exactly_its_chips(served, small_world, small_preset, small_dataset,
                                                          tmp_path, capsys):
    clean = load_dataset(small_dataset)
    rgb = clean.samples[clean.samples["modality"] == "rgb"]
    tile = rgb["item_id"].value_counts().index[-1]  # the NAIP tile fewest chips come from
    bad = served.add(Fault(f"/naip/{tile}/image\\.tif$", status=503, count=None, methods=("GET", "HEAD")))
    out = tmp_path / "lossy"
    report = build_dataset(small_preset.with_overrides(catalog=f"{served.url}/{small_world.name}"), out,
                           scheduler="threads", workers=2, progress=False, retry=FAST)
    ds = load_dataset(out)  # complete and verified: checksums (rejects.parquet included), fingerprint
    assert bad.fired > 0
    rejects = pd.read_parquet(out / REJECTS_FILE)
    failed = rejects[rejects["kind"] == "read"]
    href = f"{served.url}/naip/{tile}/image.tif"
    assert set(failed["href"]) == {href}
    assert (failed["reason"] == "read failed (http-503)").all() and (failed["status"] == 503).all()
    for attempts in failed["attempts"]:
        assert [a["status"] for a in json.loads(attempts)] == [503] * FAST.attempts
    # Every chip the clean build took from that tile failed now, and was replaced.
    assert set(rgb.loc[rgb["item_id"] == tile, "sample_id"]) <= set(failed["candidate_id"])
    assert tile not in set(ds.samples["item_id"])
    assert ds.samples[ds.samples["modality"] == "rgb"]["label"].value_counts().eq(small_preset.per_class).all()
    # Nothing else was lost: every other clean chip is still there, with the very same pixels.
    kept = clean.samples[clean.samples["item_id"] != tile]
    now = ds.samples.set_index("sample_id")
    for _, row in kept.iterrows():
        old = (clean.ms if row["modality"] == "ms" else clean.rgb)[row["array_index"]]
        new = (ds.ms if row["modality"] == "ms" else ds.rgb)[now.loc[row["sample_id"], "array_index"]]
        assert np.array_equal(old, new), row["sample_id"]
    assert report.rejected["rgb"]["read failed (http-503)"] == len(failed)
    assert f"rgb: {len(failed)} chips could not be read after retries (http-503: {len(failed)})" in capsys.readouterr().err


def test_a_catalogue_outage_keeps_finished_stages_for_the_rerun(served, small_world, small_preset, small_dataset,
                                                                tmp_path):
    preset = small_preset.with_overrides(catalog=f"{served.url}/{small_world.name}")
    served.add(Fault(r"/naip/[^/]+/[^/]+\.json$", status=503, count=None))  # the RGB search stage
    out = tmp_path / "outage"
    with pytest.raises(CatalogError, match=rf"HTTP 503 after {FAST.attempts} attempts"):
        build_dataset(preset, out, scheduler="threads", workers=2, progress=False, retry=FAST)
    assert not out.exists()
    work = next(tmp_path.glob(".outage.build-*"))
    assert (work / "search-ms.json").exists()
    served.clear()
    build_dataset(preset, out, scheduler="threads", workers=2, progress=False, retry=FAST)
    assert _fingerprint(out) == _fingerprint(small_dataset)
    # The rerun did not search Sentinel-2 again: the MS stages finished before the outage were kept.
    assert not served.statuses(S2 + r"[^/]+/[^/]+\.json$")
    assert served.statuses(r"/naip/[^/]+/[^/]+\.json$")
