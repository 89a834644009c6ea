"""The read and QA stages: windowed COG reads of one chip, item choice by pixel-level cloud QA."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import from_bounds

from ackd_bench.curation.catalog_profiles import harmonization_offset
from ackd_bench.curation.presets import ModalitySpec
from ackd_bench.curation.remote import Remote, RemoteError, RetryPolicy

# Sen2Cor scene classification codes (L2A SCL band).
SCL_NODATA = 0
SCL_CLOUDY = (3, 8, 9, 10)  # cloud shadow, cloud medium/high probability, thin cirrus

# GDAL settings for reading COGs over HTTP with few, merged range requests.
GDAL_COG_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing, no sidecar (.ovr, .aux.xml) probes
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF",  # only these URLs are files to GDAL
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
    # Per open file: headers and the tiles around a chip. GDAL's default, 25 MB, times the dataset
    # handles kept open per thread (open_dataset) would hold gigabytes.
    "VSI_CACHE_SIZE": str(1 << 20),
    # Retries are remote.py's alone: one policy (backoff, jitter, Retry-After, re-signing on 403)
    # and every attempt recorded. GDAL's own would multiply with ours and hide the status codes.
    # (GDAL 3.10 still re-requests a failed tile up to twice inside one read; that is not configurable.)
    "GDAL_HTTP_MAX_RETRY": "0",
}


# Idle handles of local files are kept and lent to later reads of the same file, by any thread
# (one reader at a time; rasterio datasets are not thread-safe): opening a COG (headers, overview
# directory) costs more than reading a chip from it. At most this many idle handles, least
# recently used closed first. Remote hrefs are opened for every read, as before: each request
# goes through the retry funnel, and a signed URL is new with every token anyway.
IDLE_DATASETS = 128


class _IdleDatasets:
    """A pool of open, unused rasterio datasets keyed by file."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._idle: OrderedDict[tuple, list] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def take(self, key: tuple):
        with self._lock:
            handles = self._idle.get(key)
            if not handles:
                return None
            ds = handles.pop()
            if not handles:
                del self._idle[key]
            self._count -= 1
            return ds

    def give(self, key: tuple, ds) -> None:
        evicted = []
        with self._lock:
            self._idle.setdefault(key, []).append(ds)
            self._idle.move_to_end(key)
            self._count += 1
            while self._count > self.limit:
                oldest = next(iter(self._idle))
                evicted.append(self._idle[oldest].pop())
                if not self._idle[oldest]:
                    del self._idle[oldest]
                self._count -= 1
        for old in evicted:
            old.close()

    def close_all(self) -> None:
        with self._lock:
            handles = [ds for group in self._idle.values() for ds in group]
            self._idle.clear()
            self._count = 0
        for ds in handles:
            ds.close()


_idle_datasets = _IdleDatasets(IDLE_DATASETS)


@contextmanager
def open_dataset(href: str) -> Iterator[rasterio.DatasetReader]:
    """``rasterio.open(href)``, reusing an idle open handle of the same local file when there is one.

    A local file is known by its path, size and modification time, so a file rewritten in place is
    opened afresh; a handle whose read raised is closed, not kept. URLs are not pooled.
    """
    try:
        stat = os.stat(href)
    except OSError:  # a URL or /vsi path: a fresh handle every time
        with rasterio.open(href) as ds:
            yield ds
        return
    key = (href, stat.st_size, stat.st_mtime_ns)
    ds = _idle_datasets.take(key)
    if ds is None:
        ds = rasterio.open(href)
    try:
        yield ds
    except BaseException:
        ds.close()
        raise
    _idle_datasets.give(key, ds)


def close_open_datasets() -> None:
    """Close every idle dataset handle kept by :func:`open_dataset`."""
    _idle_datasets.close_all()


def gdal_env(policy: RetryPolicy | None = None) -> rasterio.Env:
    """A rasterio environment with the COG read settings and the policy's timeout (GDAL options are per thread)."""
    timeout = f"{(policy or RetryPolicy()).timeout:g}"
    return rasterio.Env(**GDAL_COG_OPTIONS, GDAL_HTTP_TIMEOUT=timeout, GDAL_HTTP_CONNECTTIMEOUT=timeout)


@dataclass(frozen=True)
class ItemRef:
    """What the read stage needs of a STAC item: id, time, CRS, asset hrefs (unsigned)."""

    id: str
    collection: str
    datetime: str
    epsg: int | None
    assets: dict[str, str]
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "collection": self.collection, "datetime": self.datetime,
                "epsg": self.epsg, "assets": self.assets, "properties": self.properties}


def rank_items(items: list[ItemRef], prefer: str) -> list[ItemRef]:
    """Items in the order they are tried: nearest to a date (``nearest:YYYY-MM-DD``) or latest first."""
    if prefer == "latest":
        return sorted(items, key=lambda it: (-it.time.timestamp(), it.id))
    if prefer.startswith("nearest:"):
        target = datetime.fromisoformat(prefer.split(":", 1)[1]).timestamp()
        return sorted(items, key=lambda it: (abs(it.time.timestamp() - target), it.id))
    raise ValueError(f"unknown item preference {prefer!r}; use 'latest' or 'nearest:YYYY-MM-DD'")


@dataclass
class ChipRead:
    """Outcome of reading one chip: the array and its QA numbers, or the reason it was rejected."""

    candidate_id: str
    array: np.ndarray | None = None
    item: ItemRef | None = None
    cloud_fraction: float = 0.0
    nodata_fraction: float = 0.0
    reject: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None  # the read that failed for good: href, reason, its attempts
    retries: list[dict[str, Any]] = field(default_factory=list)  # failed calls that a retry overcame


def open_window(src, crs: str, bounds: tuple[float, float, float, float]):
    """A dataset in the chip CRS (warped when the asset is in another CRS) and the chip window."""
    target = CRS.from_user_input(crs)
    ds = src if src.crs == target else WarpedVRT(src, crs=target, resampling=Resampling.bilinear)
    window = from_bounds(*bounds, transform=ds.transform)
    inside = (window.col_off >= -1e-6 and window.row_off >= -1e-6
              and window.col_off + window.width <= ds.width + 1e-6
              and window.row_off + window.height <= ds.height + 1e-6)
    return ds, window, inside


def _resampling_for(ds, gsd: float, categorical: bool) -> Resampling:
    if categorical:
        return Resampling.nearest
    res = abs(ds.transform.a)
    if res < gsd * 0.99:
        return Resampling.average
    return Resampling.bilinear if res > gsd * 1.01 else Resampling.nearest


def read_window(href: str, index: int | list[int], crs: str, bounds: tuple[float, float, float, float], px: int,
                gsd: float, *, categorical: bool = False, remote: Remote | None = None,
                retried: list[dict[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """One band (or several bands of one asset, read at once) of one chip, resampled onto the chip
    grid, read through the remote funnel.

    Args:
        href: the unsigned asset href (signed here, right before the read).
        index: the 1-based band index, or a list of them.
        remote: signing and retry policy (default: no signing, default policy).
        retried: when the read succeeds, receives a record of each failed call a retry overcame.

    Returns:
        (values, valid): values of shape (px, px), or (len(index), px, px) for a list; valid
        (px, px), where every band read is valid. None when the chip is not inside the asset.

    Raises:
        RemoteError: the asset could not be read, permanently or after every retry.
    """
    return (remote or Remote()).read(
        href, lambda readable: _read_window(readable, index, crs, bounds, px, gsd, categorical), retried=retried,
    )


def _read_window(href: str, index: int | list[int], crs: str, bounds, px: int, gsd: float, categorical: bool):
    indexes = [index] if isinstance(index, int) else list(index)
    with open_dataset(href) as src:
        ds, window, inside = open_window(src, crs, bounds)
        try:
            if not inside:
                return None
            resampling = _resampling_for(ds, gsd, categorical)
            values = ds.read(indexes, window=window, out_shape=(len(indexes), px, px), resampling=resampling)
            nodata = [ds.nodatavals[i - 1] for i in indexes]
            if resampling == Resampling.nearest and ds is src and all(
                    v is not None and ds.mask_flag_enums[i - 1] == [MaskFlags.nodata] for i, v in zip(indexes, nodata)):
                # The mask GDAL would read is exactly "value != nodata" of the very pixels read: no second read.
                valid = np.all([band != v for band, v in zip(values, nodata)], axis=0)
            else:
                masks = ds.read_masks(indexes, window=window, out_shape=(len(indexes), px, px),
                                      resampling=Resampling.nearest)
                valid = np.all(masks > 0, axis=0)
            return (values[0] if isinstance(index, int) else values), valid
        finally:
            if ds is not src:
                ds.close()


def _baseline_offset(item: ItemRef, rule: str) -> int:
    """The DN offset to remove from ``item``'s bands, as its catalogue profile's ``rule`` decides.

    Planetary Computer: every scene of processing baseline >= 04.00 carries +1000. Earth Search:
    the same, except scenes it already corrected (``earthsearch:boa_offset_applied``). See
    `catalog_profiles.OFFSET_RULES`.
    """
    return harmonization_offset(rule, item.properties)


def _scl_qa(item: ItemRef, spec: ModalitySpec, crs: str, bounds, remote: Remote, retries: list):
    got = read_window(item.assets[spec.qa_asset], 1, crs, bounds, spec.chip_px, spec.gsd,
                      categorical=True, remote=remote, retried=retries)
    if got is None:
        return None
    scl, valid = got
    nodata = (scl == SCL_NODATA) | ~valid
    cloud = np.isin(scl, SCL_CLOUDY) & ~nodata
    return float(cloud.mean()), float(nodata.mean())


def read_chip(candidate: dict[str, Any], items: list[ItemRef], spec: ModalitySpec, *,
              max_cloud: float, max_nodata: float, remote: Remote) -> ChipRead:
    """Pick the clearest item over one chip, read all its bands, and QA the result.

    Items are tried in preference order; with a QA asset (SCL) each is scored by its cloud and
    nodata fractions over the chip and the clearest passing one wins (ties: preference order).
    A chip no item passes is rejected with the reason of the best attempt. A chip whose read fails
    for good (after the retries of ``remote.policy``) is rejected as ``read failed (REASON)``, and
    `ChipRead.failure` says which asset and how each attempt failed; it is not read from another
    item instead, so a flaky server never changes which item a chip comes from.

    Args:
        candidate: a row of the candidate table (``candidate_id``, bounds, ``crs``).
        items: items whose footprint contains the chip, in preference order.
        spec: the modality.
        max_cloud, max_nodata: QA thresholds (fractions of the chip).
        remote: signs hrefs at read time and retries failed reads (`Catalog.signer`).
    """
    out = ChipRead(candidate_id=candidate["candidate_id"])
    bounds = (candidate["minx"], candidate["miny"], candidate["maxx"], candidate["maxy"])
    crs = candidate["crs"]
    if not items:
        out.reject = "no item covers the chip"
        return out
    best = None
    with gdal_env(remote.policy):
        try:
            for item in items:
                if spec.qa_asset:
                    qa = _scl_qa(item, spec, crs, bounds, remote, out.retries)
                    if qa is None:
                        out.attempts.append({"item": item.id, "reason": "chip outside asset"})
                        continue
                    cloud, nodata = qa
                    out.attempts.append({"item": item.id, "cloud": round(cloud, 4), "nodata": round(nodata, 4)})
                    if cloud <= max_cloud and nodata <= max_nodata and (best is None or cloud < best[1]):
                        best = (item, cloud, nodata)
                    if cloud == 0.0 and nodata == 0.0:
                        break  # nothing later in preference order can be clearer
                else:
                    best = (item, 0.0, 0.0)
                    break
            if best is None:
                out.reject = _reject_reason(out.attempts, max_cloud, max_nodata)
                return out
            item, out.cloud_fraction, out.nodata_fraction = best
            array, nodata = _read_bands(item, spec, crs, bounds, remote, out.retries)
        except RemoteError as err:
            out.reject = f"read failed ({err.failure.reason}): {err}"[:300]
            out.failure = {"href": err.url, "reason": err.failure.reason, "status": err.failure.status,
                           "attempts": err.attempts}
            return out
    if array is None:
        out.reject = "chip outside the item's rasters"
        return out
    out.nodata_fraction = max(out.nodata_fraction, nodata)
    if out.nodata_fraction > max_nodata:
        out.reject = f"nodata {out.nodata_fraction:.3f} > {max_nodata:g}"
        return out
    out.array, out.item = array, item
    return out


def _read_bands(item: ItemRef, spec: ModalitySpec, crs: str, bounds, remote: Remote,
                retries: list) -> tuple[np.ndarray | None, float]:
    bands, invalid = {}, np.zeros((spec.chip_px, spec.chip_px), dtype=bool)
    by_asset: dict[str, list[int]] = {}
    for k, band in enumerate(spec.bands):
        by_asset.setdefault(band.asset, []).append(k)
    for asset, members in by_asset.items():  # one read per asset (NAIP's image holds R, G, B, NIR)
        got = read_window(item.assets[asset], [spec.bands[k].index for k in members], crs, bounds, spec.chip_px,
                          spec.gsd, remote=remote, retried=retries)
        if got is None:
            return None, 1.0
        values, valid = got
        bands.update(zip(members, values))
        invalid |= ~valid
    array = np.stack([bands[k] for k in range(len(spec.bands))]).astype(spec.dtype, copy=False)
    offset = _baseline_offset(item, spec.offset_rule)
    if offset:
        # Harmonise to reflectance * 1e4 across processing baselines; 0 stays reserved for nodata.
        shifted = np.clip(array.astype(np.int32) - offset, 1, np.iinfo(array.dtype).max)
        array = np.where(array == 0, 0, shifted).astype(spec.dtype)
    return array, float(invalid.mean())


def _reject_reason(attempts: list[dict[str, Any]], max_cloud: float, max_nodata: float) -> str:
    scored = [a for a in attempts if "cloud" in a]
    if not scored:
        return "chip outside every candidate item"
    best = min(scored, key=lambda a: (a["cloud"] > max_cloud) + (a["nodata"] > max_nodata) + a["cloud"])
    if best["nodata"] > max_nodata:
        return f"nodata {best['nodata']:.3f} > {max_nodata:g} in all {len(scored)} items"
    return f"cloud {best['cloud']:.3f} > {max_cloud:g} in all {len(scored)} items"

