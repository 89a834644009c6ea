"""The one funnel for catalogue I/O: opening STAC APIs or static catalogs, searching, signing hrefs.

Every STAC/HTTP failure leaves this module as a `CatalogError` carrying the URL, so the CLI
can print one actionable line.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pystac
import shapely.geometry

from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.curation.remote import Remote, RetryingStacIO, RetryPolicy


class CatalogError(AckdBenchError):
    """A catalogue could not be opened or searched."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class SearchResult:
    """Items found by one search, and the exact query that found them (for the manifest)."""

    items: list[pystac.Item]
    query: dict[str, Any]


class Catalog:
    """A STAC catalogue: a STAC API (searched server-side) or a static catalog (filtered here).

    Static catalogs are searched with the same semantics as STAC API item search (bbox
    intersection, datetime interval, ``query`` comparison operators), so a build gives the same
    items whether the files are read directly or served by a STAC API.

    Args:
        url: STAC API root, or a static ``catalog.json`` (path or URL).
        sign: sign asset hrefs with Planetary Computer SAS tokens when they are read.
        retry: retries and timeouts of every STAC request and asset read (`remote.RetryPolicy`).
    """

    def __init__(self, url: str, *, sign: bool = False, retry: RetryPolicy | None = None) -> None:
        import pystac_client
        import pystac_client.exceptions
        import pystac_client.warnings

        self.url = url
        self.sign = sign
        self.retry = retry or RetryPolicy()
        try:
            with warnings.catch_warnings():
                # A static catalog declares no API conformance; that is expected, not a problem.
                warnings.simplefilter("ignore", category=pystac_client.warnings.NoConformsTo)
                self._client = pystac_client.Client.open(
                    url, stac_io=RetryingStacIO(self.retry)
                )
        except pystac_client.exceptions.APIError as err:
            status = getattr(err, "status_code", None)
            why = f"HTTP {status}" if status else _short(err)
            raise CatalogError(
                f"cannot open STAC catalogue {url}: {why}{_tries(err)} — check the URL and your network", url=url,
                status=status,
            ) from err
        except (OSError, ValueError, KeyError, pystac.STACError) as err:
            raise CatalogError(
                f"cannot open STAC catalogue {url}: {err.__class__.__name__}: {str(err)[:200]}"
                " — check the URL/path and your network", url=url,
            ) from err
        self.is_api = self._client.conforms_to(pystac_client.ConformanceClasses.ITEM_SEARCH)

    def search(
        self, *, collection: str, bbox: tuple[float, float, float, float], datetime_range: str,
        query: dict[str, Any] | None = None,
    ) -> SearchResult:
        """Items of ``collection`` intersecting ``bbox`` within ``datetime_range``.

        Args:
            collection: collection id.
            bbox: lon/lat (west, south, east, north).
            datetime_range: RFC 3339 interval ``start/end``.
            query: STAC API ``query`` extension filter, e.g. ``{"eo:cloud_cover": {"lt": 60}}``.

        Returns:
            The items, sorted by id for reproducibility, and the query that was sent.
        """
        record = {"collections": [collection], "bbox": list(bbox)}
        if not _is_unbounded(datetime_range):  # STAC APIs refuse "../.."; any time is no datetime at all
            record["datetime"] = datetime_range
        if query:
            record["query"] = query
        if self.is_api:
            items = self._search_api(record)
        else:
            from pystac_client.exceptions import APIError

            try:
                items = self._search_static(collection, bbox, datetime_range, query or {})
            except (APIError, pystac.STACError) as err:  # a static catalog's JSON files are fetched one by one
                cause = err if isinstance(err, APIError) else err.__cause__
                if not isinstance(cause, APIError):
                    raise
                status = getattr(cause, "status_code", None)
                raise CatalogError(
                    f"reading {collection!r} of static catalogue {self.url} failed (HTTP {status or '?'}"
                    f"{_tries(cause)}): {_short(err)} — check the server and your network", url=self.url,
                    status=status,
                ) from err
        record["mode"] = "api" if self.is_api else "static"
        return SearchResult(items=sorted(items, key=lambda it: it.id), query=record)

    def _search_api(self, record: dict[str, Any]) -> list[pystac.Item]:
        from pystac_client.exceptions import APIError

        params = {k: v for k, v in record.items()}
        try:
            with warnings.catch_warnings():
                # Some servers (pgstac among them) omit numberMatched; pystac-client warns about it.
                warnings.filterwarnings("ignore", message=".*numberMatched.*")
                search = self._client.search(**params, limit=100)
                items = [pystac.Item.from_dict(d) for d in search.items_as_dicts()]
                known = [] if items else sorted(c.id for c in self._client.get_collections())
        except APIError as err:
            status = getattr(err, "status_code", None)
            raise CatalogError(
                f"search on {self.url} failed (HTTP {status or '?'}{_tries(err)}): {_api_reason(err)}"
                f" — query {json.dumps(params)}",
                url=self.url, status=status,
            ) from err
        except OSError as err:
            raise CatalogError(f"search on {self.url} failed: {err}", url=self.url) from err
        missing = [c for c in record["collections"] if not items and c not in known]
        if missing:  # a STAC API answers an unknown collection with no items, not an error
            raise CatalogError(
                f"collection {missing[0]!r} is not in catalogue {self.url}; it has: {', '.join(known)}", url=self.url,
            )
        return items

    def _search_static(  # noqa: C901 - mirrors the API's filter semantics in one place
        self, collection: str, bbox: tuple[float, float, float, float], datetime_range: str,
        query: dict[str, Any],
    ) -> list[pystac.Item]:
        import pystac_client.warnings

        with pystac_client.warnings.ignore():
            coll = self._client.get_child(collection)
        if coll is None:
            with pystac_client.warnings.ignore():
                known = sorted(c.id for c in self._client.get_children())
            raise CatalogError(
                f"collection {collection!r} is not in catalogue {self.url}; it has: {', '.join(known)}",
                url=self.url,
            )
        area = shapely.geometry.box(*bbox)
        start, end = _parse_interval(datetime_range)
        found = []
        with pystac_client.warnings.ignore():  # walking a static catalog is the point here
            all_items = list(coll.get_items(recursive=True))
        for item in all_items:
            geom = shapely.geometry.shape(item.geometry) if item.geometry else None
            if geom is None or not geom.intersects(area):
                continue
            # As a STAC API: an instant must lie in the interval, a range item (datetime null,
            # start_datetime/end_datetime, e.g. a yearly land-cover map) must intersect it.
            first = item.datetime or item.common_metadata.start_datetime
            last = item.datetime or item.common_metadata.end_datetime or first
            if first is None or last < start or first > end:
                continue
            if all(_compare(item.properties.get(key), ops) for key, ops in query.items()):
                found.append(item)
        return found

    def href(self, item: pystac.Item, asset_key: str) -> str:
        """The absolute, unsigned href of an item's asset (what the manifest records)."""
        asset = item.assets.get(asset_key)
        if asset is None:
            raise CatalogError(
                f"item {item.id} has no asset {asset_key!r} (it has: {', '.join(sorted(item.assets))})",
                url=self.url,
            )
        return asset.get_absolute_href() or asset.href

    def readable_href(self, href: str) -> str:
        """The href to hand to rasterio: signed now (tokens expire) when the catalogue needs it."""
        return self.signer(href)

    @property
    def signer(self) -> Remote:
        """`readable_href` and the retry policy without the catalogue client: small and picklable,
        for dask workers (Planetary Computer tokens expire, so each worker signs right before a read)."""
        return Remote(sign=self.sign, policy=self.retry)


def _tries(err: Exception) -> str:
    """' after N attempts' when the remote funnel retried the failed request."""
    attempts = getattr(err, "attempts", [])
    return f" after {len(attempts)} attempts" if len(attempts) > 1 else ""


def _short(err: Exception) -> str:
    """The most telling part of an HTTP client error (e.g. 'Connection refused')."""
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Temporary failure"):
        if marker in text:
            return marker
    return text[:160]


def _api_reason(err: Exception) -> str:
    """The server's own explanation in an error response (stac-fastapi/FastAPI JSON), else its start."""
    text = str(err)
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    detail = (body.get("description") or body.get("detail")) if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": ["body", "bbox"], "msg": "..."}]
        problems = [(".".join(map(str, e.get("loc", [])[1:])), str(e.get("msg")))
                    for e in detail if isinstance(e, dict)]
        return "; ".join(f"{where}: {msg.removeprefix('Value error, ')}" for where, msg in problems)
    return str(detail)[:200] if detail else text[:200]


def _is_unbounded(interval: str) -> bool:
    """True for a datetime interval open at both ends ("../..", "/"), i.e. any time."""
    lo, _, hi = interval.partition("/")
    return lo in ("", "..") and hi in ("", "..")


def _parse_interval(interval: str) -> tuple[datetime, datetime]:
    """``(start, end)`` of an interval, inclusive, as pystac-client sends it to a STAC API.

    A bound given as a date (``2023``, ``2023-09`` or ``2023-09-30``) covers that whole period:
    the start from its first second, the end to its last (``2023-09-30`` ends at 23:59:59Z), so a
    static catalog and an API return the same items for the presets' date-only ranges.
    """
    lo, _, hi = interval.partition("/")
    start = _parse_time(lo) if lo not in ("", "..") else datetime.min.replace(tzinfo=timezone.utc)
    end = _parse_time(hi, end=True) if hi not in ("", "..") else datetime.max.replace(tzinfo=timezone.utc)
    return start, end


_DATE_ONLY = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def _parse_time(text: str, *, end: bool = False) -> datetime:
    """A bound of a datetime interval; a date-only bound is its period's first (or, ``end``, last) second."""
    date_only = _DATE_ONLY.match(text)
    if date_only:
        year, month, day = (int(g) if g else None for g in date_only.groups())
        first = datetime(year, month or 1, day or 1, tzinfo=timezone.utc)
        if not end:
            return first
        if day:
            following = first + timedelta(days=1)
        elif month:
            following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
        else:
            following = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
        return following - timedelta(seconds=1)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


_OPS = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
}


def _compare(value: Any, ops: dict[str, Any]) -> bool:
    if value is None:
        return False
    for op, ref in ops.items():
        if op not in _OPS:
            raise CatalogError(f"unsupported query operator {op!r}; use one of {', '.join(_OPS)}")
        if not _OPS[op](value, ref):
            return False
    return True
