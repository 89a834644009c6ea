"""The one funnel for catalogue I/O: opening STAC APIs or static catalogs, searching, signing hrefs.

Every STAC/HTTP failure leaves this module as a `CatalogError` carrying the URL, so the CLI
can print one actionable line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pystac
import shapely.geometry

from ackd_bench.benchmark.errors import AckdBenchError


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
        timeout: HTTP timeout in seconds.
        max_retries: retries on transient HTTP failures (pystac-client's urllib3 policy).
    """

    def __init__(self, url: str, *, sign: bool = False, timeout: float = 60.0, max_retries: int = 5) -> None:
        import pystac_client
        import pystac_client.exceptions
        import pystac_client.warnings
        from pystac_client.stac_api_io import StacApiIO

        self.url = url
        self.sign = sign
        try:
            with warnings.catch_warnings():
                # A static catalog declares no API conformance; that is expected, not a problem.
                warnings.simplefilter("ignore", category=pystac_client.warnings.NoConformsTo)
                self._client = pystac_client.Client.open(
                    url, stac_io=StacApiIO(max_retries=max_retries, timeout=timeout)
                )
        except pystac_client.exceptions.APIError as err:
            status = getattr(err, "status_code", None)
            why = f"HTTP {status}" if status else _short(err)
            raise CatalogError(
                f"cannot open STAC catalogue {url}: {why} — check the URL and your network", url=url, status=status,
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
        record = {"collections": [collection], "bbox": list(bbox), "datetime": datetime_range}
        if query:
            record["query"] = query
        if self.is_api:
            items = self._search_api(record)
        else:
            items = self._search_static(collection, bbox, datetime_range, query or {})
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
                return [pystac.Item.from_dict(d) for d in search.items_as_dicts()]
        except APIError as err:
            raise CatalogError(
                f"search on {self.url} failed ({getattr(err, 'status_code', '?')}): {str(err)[:200]}",
                url=self.url, status=getattr(err, "status_code", None),
            ) from err
        except OSError as err:
            raise CatalogError(f"search on {self.url} failed: {err}", url=self.url) from err

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
            when = item.datetime or item.common_metadata.start_datetime
            if when is None or not (start <= when <= end):
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
        if self.sign and href.startswith("http"):
            import planetary_computer

            return planetary_computer.sign(href)
        return href


def _short(err: Exception) -> str:
    """The most telling part of an HTTP client error (e.g. 'Connection refused')."""
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Temporary failure"):
        if marker in text:
            return marker
    return text[:160]


def _parse_interval(interval: str) -> tuple[datetime, datetime]:
    lo, _, hi = interval.partition("/")
    start = _parse_time(lo) if lo not in ("", "..") else datetime.min.replace(tzinfo=timezone.utc)
    end = _parse_time(hi) if hi not in ("", "..") else datetime.max.replace(tzinfo=timezone.utc)
    return start, end


def _parse_time(text: str) -> datetime:
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
