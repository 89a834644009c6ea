"""The one funnel for remote I/O: retry policy, failure classification, SAS re-signing, STAC I/O.

Every COG read (`Remote.read`) and every STAC request (`RetryingStacIO`) goes through
`retry_call`: transient failures (HTTP 408/425/429/5xx, timeouts, dropped connections, truncated
bodies) are retried with exponential backoff and jitter, honouring ``Retry-After`` where the
response is visible; an HTTP 403 on a signed href (an expired SAS token) is re-signed with a fresh
token (at once; after the usual wait if the fresh one is refused too); anything else fails at
once. GDAL's own HTTP retries are switched off (``GDAL_HTTP_MAX_RETRY=0`` in `reading.gdal_env`),
so every retry is counted and recorded here.

GDAL names the HTTP status only when the failing request is the file-size probe at open
(``HTTP response code: 503``, ``CURL error: Operation timed out ...``); a failed range read
surfaces as ``not recognized as being in a supported file format`` or ``Read failed``/
``TIFFFillTile ... got 0 bytes``. For those, one 1-byte range request (`probe`) asks the server
what is wrong, which also yields ``Retry-After``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from pystac_client.stac_api_io import StacApiIO

from ackd_bench.benchmark.errors import AckdBenchError

T = TypeVar("T")
_JITTER = random.Random()  # its own generator: retries never disturb a seeded global one

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Markers of curl errors in GDAL messages (GDAL prefixes them with "CURL error:").
_TIMEOUT_MARKERS = ("timed out", "Timeout was reached")
_CONNECTION_MARKERS = (
    "Empty reply", "reset", "Recv failure", "Failure when receiving", "transfer closed",
    "bytes missing", "Connection refused", "Couldn't connect", "Could not resolve", "Send failure",
)
_HTTP_CODE = re.compile(r"HTTP (?:response|error) code\s*:?\s*(\d{3})")
_TOKEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class RetryPolicy:
    """How remote requests are retried.

    The wait before retry ``n`` (1-based) is ``min(max_delay, base_delay * 2**(n-1))``, of which
    the fraction ``jitter`` is drawn at random (0: fixed, 1: "full jitter"), so that many workers
    hit by the same outage do not retry in lockstep; a ``Retry-After`` header raises the wait to
    what the server asked for, up to ``max_delay``.

    Args:
        attempts: calls per request in all (1: no retries).
        base_delay: seconds before the first retry.
        max_delay: the longest wait between two attempts, seconds.
        jitter: fraction of each wait that is random, in [0, 1].
        timeout: seconds one HTTP request may take (connect and transfer), for GDAL and STAC alike.
    """

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.timeout <= 0:
            raise ValueError("retry delays must be >= 0 and the timeout > 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"retry jitter must be in [0, 1], got {self.jitter}")

    def wait(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        delay = ceiling * (1.0 - self.jitter * _JITTER.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay


@dataclass(frozen=True)
class Failure:
    """What went wrong with one remote call.

    Attributes:
        reason: short kind: ``http-503``, ``timeout``, ``connection``, ``interrupted`` (the
            server answers but a transfer broke, e.g. a truncated body), ``forbidden`` (403),
            ``not-found``, ``unreadable`` (a local file or a corrupt one).
        transient: worth retrying.
        status: the HTTP status, when known.
        retry_after: seconds the server asked to wait.
        detail: the message it came with (shortened).
    """

    reason: str
    transient: bool
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


class RemoteError(AckdBenchError):
    """A remote read failed for good: permanently, or on every attempt the policy allows.

    Attributes:
        url: the unsigned href.
        failure: the last failure.
        attempts: one record per failed call (``attempt``, ``reason``, ``status``, ``error``,
            ``wait`` before the next one, ``resigned`` when a fresh SAS token was fetched).
    """

    def __init__(self, url: str, failure: Failure, attempts: list[dict[str, Any]]) -> None:
        self.url = url
        self.failure = failure
        self.attempts = attempts
        tries = f"after {len(attempts)} attempts" if len(attempts) > 1 else "(not retried)"
        super().__init__(f"cannot read {url}: {failure.reason} {tries}: {failure.detail}")


def retry_call(fn: Callable[[], T], *, classify: Callable[[BaseException], Failure | None], policy: RetryPolicy,
               attempts: list[dict[str, Any]], recover: Callable[[Failure], bool] | None = None) -> T:
    """``fn()``, retried under ``policy``; the last error propagates unchanged.

    Args:
        fn: the remote call.
        classify: turns an exception into a `Failure`; None means "not a remote failure" (re-raised).
        policy: attempts and waits.
        attempts: receives one record per failed call, also when a later call succeeds.
        recover: called with a failure that is not transient; True means the caller fixed the
            cause (a re-signed href): the next call goes out at once the first time, after the
            usual wait later on (a cause that keeps coming back is not hammered).
    """
    recovered = 0
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as err:
            failure = classify(err)
            if failure is None:
                raise
            record: dict[str, Any] = {"attempt": attempt, "reason": failure.reason, "status": failure.status,
                                      "error": failure.detail[:200]}
            attempts.append(record)
            if attempt == policy.attempts:
                raise
            if not failure.transient:
                if recover is None or not recover(failure):
                    raise
                record["resigned"] = True
                recovered += 1
                if recovered == 1:
                    continue
            record["wait"] = round(policy.wait(attempt, failure.retry_after), 3)
            time.sleep(record["wait"])
    raise AssertionError("unreachable: the loop returns or raises")


def failure_from_status(status: int, *, retry_after: float | None = None, detail: str = "") -> Failure:
    """The failure an HTTP error status stands for."""
    if status == 403:
        return Failure("forbidden", False, status, detail=detail or "HTTP 403 (expired or missing SAS token?)")
    if status in (404, 410):
        return Failure("not-found", False, status, detail=detail or f"HTTP {status}")
    transient = status in TRANSIENT_STATUS or (status >= 500 and status != 501)  # 501: never implemented
    return Failure(f"http-{status}", transient, status, retry_after, detail or f"HTTP {status}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message_chain(err: BaseException) -> str:
    parts, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        parts.append(str(err))
        err = err.__cause__ or err.__context__
    return " | ".join(parts)


def classify_gdal_error(err: BaseException, url: str, policy: RetryPolicy) -> Failure | None:
    """Classify a rasterio/GDAL read error of ``url`` (the href GDAL was given).

    Returns None for errors that are not I/O failures (they are bugs, not network trouble).
    """
    import rasterio.errors

    if not isinstance(err, rasterio.errors.RasterioIOError):
        return None
    text = _message_chain(err)
    match = _HTTP_CODE.search(text)
    if match:
        return failure_from_status(int(match.group(1)), detail=_short(text))
    if any(m in text for m in _TIMEOUT_MARKERS):
        return Failure("timeout", True, detail=_short(text))
    if unknown_host(text):
        return Failure("unknown-host", False, detail=_short(text))
    if "CURL error" in text and any(m in text for m in _CONNECTION_MARKERS):
        return Failure("connection", True, detail=_short(text))
    if not url.startswith(("http://", "https://")):
        return Failure("unreadable", False, detail=_short(text))
    return probe(url, policy, detail=_short(text))


def probe(url: str, policy: RetryPolicy, *, detail: str = "") -> Failure:
    """Ask the server about ``url`` with a 1-byte range request after GDAL hid the cause of a failure.

    Goes through the proxy GDAL uses (``GDAL_HTTP_PROXY``, ``GDAL_HTTPS_PROXY``), so it reaches the same server.
    """
    import requests

    proxies = {}
    for scheme, option in (("http", "GDAL_HTTP_PROXY"), ("https", "GDAL_HTTPS_PROXY")):
        proxy = _gdal_option(option) or _gdal_option("GDAL_HTTP_PROXY")
        if proxy:
            proxies[scheme] = proxy if "://" in proxy else f"http://{proxy}"
    try:
        with requests.get(url, headers={"Range": "bytes=0-0"}, timeout=policy.timeout, stream=True,
                          proxies=proxies or None) as response:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except requests.Timeout:
        return Failure("timeout", True, detail=detail)
    except requests.RequestException as err:
        return Failure("connection", True, detail=f"{detail} (probe: {_short(str(err))})")
    if status < 400:
        # The server answers now, so the transfer GDAL made broke (a truncated body, a reset).
        return Failure("interrupted", True, detail=detail)
    return failure_from_status(status, retry_after=retry_after, detail=f"HTTP {status}: {detail}")


def _gdal_option(name: str) -> str | None:
    import os

    from rasterio.env import getenv, hasenv

    if hasenv():
        value = getenv().get(name)
        if value:
            return str(value)
    return os.environ.get(name)


#: A cached SAS token is renewed when it has less than this many seconds left.
TOKEN_MIN_TTL = 120.0


def _blob_container(href: str) -> tuple[str, str] | None:
    """(storage account, container) of an Azure blob-storage href that Planetary Computer signs, else None."""
    from urllib.parse import urlparse

    from planetary_computer import sas, utils

    parsed = urlparse(href.rstrip("/"))
    if not parsed.netloc.endswith(sas.BLOB_STORAGE_DOMAIN):
        return None
    if parsed.netloc == "ai4edatasetspublicassets.blob.core.windows.net":  # public; never signed
        return None
    return utils.parse_blob_url(parsed)


# Messages of a host name that does not resolve (curl: "Could not resolve host"; getaddrinfo). Python's
# "Temporary failure in name resolution" (EAI_AGAIN) is a resolver hiccup and stays transient.
_UNKNOWN_HOST_MARKERS = ("Could not resolve host", "Name or service not known", "No address associated with hostname",
                         "nodename nor servname provided", "getaddrinfo failed")


def unknown_host(text: str) -> bool:
    """Whether an error message says a host name does not resolve (permanent on every side of the funnel)."""
    return any(m in text for m in _UNKNOWN_HOST_MARKERS)


def classify_requests_error(err: BaseException, *, what: str = "request", headers: Any = None) -> Failure | None:
    """Classify a ``requests`` error (a plain HTTP call: the SAS token endpoint); None: not an HTTP failure.

    Statuses as :func:`failure_from_status` (429/5xx transient, with ``Retry-After``); a timeout, a
    dropped or refused-then-reset connection and a broken body are transient; an unknown host is not.
    """
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        response = err.response
        return failure_from_status(response.status_code,
                                   retry_after=parse_retry_after((headers or response.headers).get("Retry-After")),
                                   detail=f"{what}: HTTP {response.status_code}")
    if isinstance(err, requests.Timeout):
        return Failure("timeout", True, detail=f"{what}: {_short(str(err))}")
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return Failure("interrupted", True, detail=f"{what}: {_short(str(err))}")
    if isinstance(err, requests.ConnectionError):
        if unknown_host(str(err)):
            return Failure("unknown-host", False, detail=f"{what}: {_short(str(err))}")
        return Failure("connection", True, detail=f"{what}: {_short(str(err))}")
    if isinstance(err, (ValueError, TypeError)):  # not JSON, or not a token (pydantic errors are ValueErrors)
        return Failure("bad-response", False, detail=f"{what}: {_short(str(err))}")
    return None


_SIGNED_QUERY = re.compile(r"\?[^\s'\"|,]*sig=[^\s'\"|,]*")


def _short(text: str) -> str:
    """One line of at most 200 characters, without SAS tokens (records end up in rejects.parquet)."""
    return " ".join(_SIGNED_QUERY.sub("?<sas-token>", text).split())[:200]


@dataclass(frozen=True)
class Remote:
    """How asset reads reach the network: SAS signing and the retry policy.

    Small and picklable, so it travels with each chip read to thread, process or cluster workers.

    Args:
        sign: sign hrefs with Planetary Computer SAS tokens at read time.
        policy: retries and timeouts.
    """

    sign: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def href(self, href: str, *, attempts: list[dict[str, Any]] | None = None) -> str:
        """The href to hand to GDAL: signed now (tokens expire) when the catalogue needs it.

        The SAS token comes through this funnel (:meth:`token`), not through planetary_computer's
        own requests (10 tries, back-off to 120 s, no timeout).

        Raises:
            RemoteError: the token endpoint failed permanently or on every attempt of the policy.
        """
        if not self.sign or not href.startswith(("http://", "https://")):
            return href
        blob = _blob_container(href)
        if blob is None:
            return href  # not in Azure blob storage: nothing to sign
        import planetary_computer

        self.token(*blob, href=href, attempts=attempts)  # cached, so the line below sends nothing
        return planetary_computer.sign(href)

    def token(self, account: str, container: str, *, href: str = "", refused: str | None = None,
              attempts: list[dict[str, Any]] | None = None):
        """The SAS token of a blob container, from planetary_computer's cache or fetched through `retry_call`.

        A cached token is used while it has more than :data:`TOKEN_MIN_TTL` seconds left (more than
        planetary_computer's own 60 s, so its ``sign`` never fetches one itself); ``refused`` (an
        href whose token the server rejected with 403) drops that token first. The request has the
        policy's timeout, and 429/5xx/timeouts/dropped connections are retried with its back-off;
        one fetch serves every thread (a lock is held while fetching).

        Raises:
            RemoteError: for ``href`` (the unsigned asset), with one record per failed request.
        """
        import requests
        from planetary_computer import sas
        from planetary_computer.settings import Settings

        settings = Settings.get()
        url = f"{settings.sas_url}/{account}/{container}"
        log = [] if attempts is None else attempts
        with _TOKEN_LOCK:
            cached = sas.TOKEN_CACHE.get(url)
            if cached is not None and refused is not None and cached.token in refused:
                del sas.TOKEN_CACHE[url]
                cached = None
            if cached is not None and cached.ttl() > TOKEN_MIN_TTL:
                return cached
            headers = {"Ocp-Apim-Subscription-Key": settings.subscription_key} if settings.subscription_key else None

            def fetch():
                with requests.get(url, headers=headers, timeout=self.policy.timeout) as response:
                    response.raise_for_status()
                    return sas.SASToken(**response.json())

            last: dict[str, Any] = {}

            def classify(err: BaseException) -> Failure | None:
                last["err"], last["failure"] = err, classify_requests_error(err, what="SAS token endpoint")
                return last["failure"]

            try:
                token = retry_call(fetch, classify=classify, policy=self.policy, attempts=log)
            except Exception as err:
                if last.get("err") is not err or last["failure"] is None:
                    raise
                failure = last["failure"]
                raise RemoteError(href or url, Failure(f"token-{failure.reason}", failure.transient, failure.status,
                                                       failure.retry_after, f"SAS token from {url}: {failure.detail}"),
                                  log) from err
            sas.TOKEN_CACHE[url] = token
            return token

    def __call__(self, href: str) -> str:
        return self.href(href)

    def resign(self, href: str, refused: str, *, attempts: list[dict[str, Any]] | None = None) -> str | None:
        """``href`` signed with a fresh token, the one in ``refused`` having been rejected (HTTP 403).

        planetary_computer caches one token per storage container (``sas.TOKEN_CACHE``, keyed by
        the token endpoint URL) and renews it only within 60 s of its stated expiry; a token the
        server already refuses must be dropped from that cache to force a new one. Only the
        token that was refused is dropped, so concurrent readers refresh it once, not once each.
        The new token is fetched through :meth:`token` (the retry funnel); its failed requests go
        to ``attempts``.

        Returns:
            The freshly signed href, or None when signing cannot help (not a signed catalogue,
            not a blob-storage href).

        Raises:
            RemoteError: the token endpoint failed (see :meth:`token`).
        """
        if not self.sign or not href.startswith(("http://", "https://")):
            return None
        blob = _blob_container(href)
        if blob is None:
            return None
        import planetary_computer

        self.token(*blob, href=href, refused=refused, attempts=attempts)
        return planetary_computer.sign(href)

    def read(self, href: str, fn: Callable[[str], T], *, retried: list[dict[str, Any]] | None = None) -> T:
        """``fn(readable_href)`` with retries, re-signing on HTTP 403.

        Args:
            href: the unsigned href.
            fn: opens and reads the href GDAL is given (the whole read is retried; GDAL's block
                cache keeps what already arrived).
            retried: when the read succeeds, receives a record of each failed call before it.

        Raises:
            RemoteError: the read failed permanently or on every attempt (with those records).
        """
        log: list[dict[str, Any]] = []
        current = [self.href(href, attempts=log)]  # a failing token endpoint raises RemoteError here
        last: dict[str, Any] = {}

        def classify(err: BaseException) -> Failure | None:
            last["err"], last["failure"] = err, classify_gdal_error(err, current[0], self.policy)
            return last["failure"]

        def recover(failure: Failure) -> bool:
            if failure.reason != "forbidden":
                return False
            fresh = self.resign(href, current[0], attempts=log)  # its token request is retried in the funnel too
            if fresh is None:
                return False
            current[0] = fresh
            return True

        def call() -> T:
            if not log:
                return fn(current[0])
            # GDAL caches a failed HEAD for the URL (later opens fail at once with the same status), so a
            # retry must bypass and thereby drop that cache. The option is a ':'-separated prefix list,
            # which cuts a URL to "/vsicurl/http": caching is off for this thread's one retry only.
            import rasterio

            with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=f"/vsicurl/{current[0]}"):
                return fn(current[0])

        try:
            result = retry_call(call, classify=classify, policy=self.policy, attempts=log, recover=recover)
        except Exception as err:
            if last.get("err") is not err or last["failure"] is None:
                raise
            raise RemoteError(href, last["failure"], log) from err
        if retried is not None:
            retried.extend(log)
        return result


class RetryingStacIO(StacApiIO):
    """pystac-client's `StacApiIO` with every request through `retry_call` (urllib3 retries off).

    A final failure is pystac-client's own ``APIError`` (its callers treat a 404 as "absent"),
    with ``attempts`` (one record per failed call) set on it.

    Args:
        policy: retries and the request timeout.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(timeout=policy.timeout, max_retries=None)
        self.policy = policy
        self._last = threading.local()  # the last response's headers, per thread (Retry-After)
        self.session.hooks["response"].append(self._keep_headers)

    def _keep_headers(self, response, *args, **kwargs) -> None:
        self._last.headers = response.headers

    def request(self, href: str, method: str | None = None, headers: dict[str, str] | None = None,
                parameters: dict[str, Any] | None = None) -> str:
        attempts: list[dict[str, Any]] = []

        def once() -> str:
            self._last.headers = {}
            return super(RetryingStacIO, self).request(href, method=method, headers=headers, parameters=parameters)

        try:
            return retry_call(once, policy=self.policy, attempts=attempts,
                              classify=lambda err: classify_http_error(err, getattr(self._last, "headers", {})))
        except Exception as err:
            err.attempts = attempts
            raise


def classify_http_error(err: BaseException, headers: Any = None) -> Failure | None:
    """Classify a pystac-client `APIError` (or the requests error it wraps); None: not an HTTP failure."""
    import requests
    from pystac_client.exceptions import APIError

    if not isinstance(err, APIError):
        return None
    status = getattr(err, "status_code", None)
    if status:
        retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return failure_from_status(status, retry_after=retry_after, detail=f"HTTP {status}: {_short(str(err))}")
    cause = err.__cause__ or err.__context__
    if isinstance(cause, requests.Timeout):
        return Failure("timeout", True, detail=_short(str(cause)))
    if isinstance(cause, requests.exceptions.ChunkedEncodingError):
        return Failure("interrupted", True, detail=_short(str(cause)))
    if isinstance(cause, requests.ConnectionError):
        if unknown_host(str(cause)):  # as for reads: a host that does not exist is a wrong URL
            return Failure("unknown-host", False, detail=_short(str(cause)))
        refused = "Connection refused" in str(cause)
        # A refused connection to the API is a wrong URL or port, not a hiccup: do not wait on it.
        return Failure("connection", not refused, detail=_short(str(cause)))
    return None
