"""SAS signing as a remote step of its own (issue 16): the token endpoint goes through the project's retry
funnel (policy, timeout, back-off, error types), on a real loopback endpoint with injected faults."""

from __future__ import annotations

import json
import time

import pytest
import rasterio
import rasterio.errors
from click.testing import CliRunner
from fault_server import BLOB_BASE, BLOB_CONTAINER, TOKEN_PATH, Fault, FaultServer, blob_catalog

from ackd_bench.benchmark.cli import main
from ackd_bench.curation.reading import gdal_env
from ackd_bench.curation.remote import (Remote, RemoteError, RetryPolicy, classify_gdal_error,
                                        classify_http_error, classify_requests_error)

pytestmark = pytest.mark.filterwarnings(  # planetary_computer 1.0's pydantic models use a class-based Config
    "ignore:Support for class-based `config` is deprecated:DeprecationWarning")

# As tests/test_faults.py: tiny waits; a timeout far above a loaded loopback request, a stall far above it.
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.5, timeout=6.0)
STALL = 15.0
HREF = f"{BLOB_BASE}/sentinel-2-l2a/scene/B04.tif"
TOKENS = f"^{TOKEN_PATH}/"


@pytest.fixture
def endpoint(token_endpoint):
    """The loopback token endpoint (conftest's `token_endpoint`)."""
    return token_endpoint


def _token_statuses(server: FaultServer) -> list[int]:
    return server.statuses(TOKENS)


def test_a_token_is_fetched_once_and_signs_the_href(endpoint):
    remote = Remote(sign=True, policy=FAST)
    signed = remote.href(HREF)
    assert signed.startswith(HREF + "?") and "sig=" in signed
    assert remote.href(HREF.replace("B04", "B08")).split("?")[1] == signed.split("?")[1]  # the cached token
    assert _token_statuses(endpoint) == [200]
    assert remote.href("http://127.0.0.1:9/not-blob-storage.tif") == "http://127.0.0.1:9/not-blob-storage.tif"


@pytest.mark.parametrize("fault, reason", [
    (Fault(TOKENS, status=503, count=2), "http-503"),
    (Fault(TOKENS, status=429, count=2, retry_after="0"), "http-429"),
])
def test_transient_token_failures_are_retried(endpoint, fault, reason):
    endpoint.add(fault)
    log: list[dict] = []
    signed = Remote(sign=True, policy=FAST).href(HREF, attempts=log)
    assert "sig=" in signed
    assert [a["reason"] for a in log] == [reason, reason]
    assert all("wait" in a for a in log)
    assert _token_statuses(endpoint) == [fault.status, fault.status, 200]


def test_a_stalled_token_endpoint_times_out_and_is_retried(endpoint):
    endpoint.add(Fault(TOKENS, kind="delay", delay=STALL, count=1))
    log: list[dict] = []
    Remote(sign=True, policy=FAST).href(HREF, attempts=log)
    assert [a["reason"] for a in log] == ["timeout"]


def test_a_failing_token_endpoint_is_a_remote_error_within_the_policys_budget(endpoint):
    endpoint.add(Fault(TOKENS, status=503, count=None))
    start = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        Remote(sign=True, policy=FAST).href(HREF)
    elapsed = time.monotonic() - start
    err = caught.value
    assert err.url == HREF and err.failure.reason == "token-http-503" and err.failure.status == 503
    assert len(err.attempts) == FAST.attempts
    assert "SAS token from" in str(err) and "\n" not in str(err)
    # waits of at most max_delay between attempts, plus loopback requests: far below a timeout
    assert elapsed < (FAST.attempts - 1) * FAST.max_delay + FAST.timeout


def test_a_permanent_token_failure_is_not_retried(endpoint):
    endpoint.add(Fault(TOKENS, status=401, count=None))
    with pytest.raises(RemoteError) as caught:
        Remote(sign=True, policy=FAST).href(HREF)
    assert caught.value.failure.reason == "token-http-401" and len(caught.value.attempts) == 1


def test_an_unreachable_token_endpoint_fails_fast(tmp_path, monkeypatch):
    """A closed port (nothing listens): retried as a dropped connection, then one RemoteError."""
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    with FaultServer(tmp_path) as server:
        dead = server.url + TOKEN_PATH
    monkeypatch.setattr(Settings.get(), "sas_url", dead)
    monkeypatch.setattr(sas, "TOKEN_CACHE", {})
    with pytest.raises(RemoteError) as caught:
        Remote(sign=True, policy=FAST).href(HREF)
    assert caught.value.failure.reason == "token-connection" and len(caught.value.attempts) == FAST.attempts


def test_an_expired_token_mid_read_is_renewed_and_a_failed_renewal_is_reported(tmp_path, small_world, monkeypatch):
    """Blob storage refuses a token after 30 requests (it "expires"). Reads go on re-signing through the
    funnel; once the endpoint fails for good, the next renewal makes the read a RemoteError naming the
    token step (a chip the build records as rejected), not planetary_computer's own retries."""
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    tif = min(small_world.parent.rglob("B04.tif"))
    href = f"{BLOB_BASE}/{tif.relative_to(small_world.parent).as_posix()}"
    with FaultServer(tmp_path, blob_root=small_world.parent, token_uses=30) as server:
        monkeypatch.setenv("GDAL_HTTP_PROXY", server.proxy)
        monkeypatch.setattr(Settings.get(), "sas_url", server.url + TOKEN_PATH)
        monkeypatch.setattr(sas, "TOKEN_CACHE", {})
        remote = Remote(sign=True, policy=FAST)

        def shape(h: str):
            with rasterio.open(h) as src:
                return src.read(1).shape

        # GDAL would answer repeated reads from its cache; every read must reach the server here
        with gdal_env(FAST), rasterio.Env(CPL_VSIL_CURL_NON_CACHED="/vsicurl/http"):
            expected = shape(str(tif))
            for _ in range(40):  # until a token has expired and been renewed
                assert remote.read(href, shape) == expected
                if len(server.tokens) >= 2:
                    break
            assert len(server.tokens) >= 2 and 403 in server.statuses(f"^/{BLOB_CONTAINER}/")
            server.add(Fault(TOKENS, status=503, count=None))
            with pytest.raises(RemoteError) as caught:
                for _ in range(40):
                    remote.read(href, shape)
    assert caught.value.failure.reason == "token-http-503"
    assert any(a.get("reason") == "forbidden" for a in caught.value.attempts)


def test_the_cli_reports_an_unreachable_token_endpoint_in_one_line(small_world, small_preset, tmp_path, monkeypatch):
    """A signed build whose token endpoint is down: one line, exit 1, nothing written (no traceback)."""
    import ackd_bench.curation.build as build_module
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    catalog = blob_catalog(small_world, tmp_path / "blob-catalog")
    with FaultServer(tmp_path) as server:
        dead = server.url + TOKEN_PATH
    monkeypatch.setattr(Settings.get(), "sas_url", dead)
    monkeypatch.setattr(sas, "TOKEN_CACHE", {})
    monkeypatch.setattr(build_module, "RetryPolicy", lambda: FAST)  # the default policy, with tiny waits
    preset = small_preset.with_overrides(catalog=str(catalog), sign=True).to_dict()
    (tmp_path / "p.json").write_text(json.dumps(preset))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build-dataset", "--preset", str(tmp_path / "p.json"), "--out", str(out),
                                       "--quiet", "--scheduler", "threads"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "token-connection" in lines[0], result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("message", ["CURL error: Could not resolve host: nowhere.invalid",
                                     "HTTPSConnectionPool: Max retries exceeded (Name or service not known)"])
def test_an_unknown_host_is_permanent_on_every_side(message):
    """Reads (GDAL), STAC requests (pystac-client) and token requests (requests) agree (issue 16, fix 4)."""
    import requests
    from pystac_client.exceptions import APIError

    gdal = classify_gdal_error(rasterio.errors.RasterioIOError(message), "https://nowhere.invalid/a.tif", FAST)
    try:
        raise APIError("request failed") from requests.ConnectionError(message)
    except APIError as err:
        stac = classify_http_error(err)
    token = classify_requests_error(requests.ConnectionError(message))
    for failure in (gdal, stac, token):
        assert failure.reason == "unknown-host" and not failure.transient
    # a resolver hiccup (EAI_AGAIN) and a dropped connection stay transient
    assert classify_requests_error(requests.ConnectionError("Temporary failure in name resolution")).transient
    assert classify_gdal_error(rasterio.errors.RasterioIOError("CURL error: Recv failure: Connection reset"),
                               "https://x.test/a.tif", FAST).transient

