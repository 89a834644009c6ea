"""STAC items and collections of the demo world, shaped like Planetary Computer's.

Same collection ids, asset keys, band names, dtypes, ``proj:*`` (projection v1.0.0, as PC
serves it), ``eo:*``, ``raster:*`` and ``classification:*`` fields. Note that pystac and
pystac-client migrate ``proj:epsg`` to ``proj:code`` when they read items, exactly as they do
for Planetary Computer's; read it with ``ProjectionExtension.ext(obj).epsg``.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pystac

from .naip import NAIP_BANDS, NaipTile
from .rasters import COG_MEDIA_TYPE
from .sentinel2 import BANDS_10M, SCL_FLAGGED, S2Acquisition
from .subtypes import FACTORS, SUBTYPE_NAMES
from .truth import FACTOR_SCALE, TRUTH_COLLECTION

EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "item_assets": "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
}
S2_TILE = "32UNA"
S2_BAND_META = {  # common name, description, centre wavelength (µm), FWHM (µm)
    "B02": ("blue", "Band 2 - Blue", 0.49, 0.098),
    "B03": ("green", "Band 3 - Green", 0.56, 0.045),
    "B04": ("red", "Band 4 - Red", 0.665, 0.038),
    "B05": ("rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019),
    "B06": ("rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018),
    "B07": ("rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028),
    "B08": ("nir", "Band 8 - NIR", 0.842, 0.145),
    "B8A": ("rededge", "Band 8A - Vegetation red edge 4", 0.865, 0.033),
    "B11": ("swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143),
    "B12": ("swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242),
}
NAIP_BAND_META = {
    "Red": ("red", "visible red"),
    "Green": ("green", "visible green"),
    "Blue": ("blue", "visible blue"),
    "NIR": ("nir", "near-infrared"),
}
WORLDCOVER_CLASSES = (  # value, description, colour hint (ESA's legend)
    (10, "Tree cover", "006400"),
    (20, "Shrubland", "FFBB22"),
    (30, "Grassland", "FFFF4C"),
    (40, "Cropland", "F096FF"),
    (50, "Built-up", "FA0000"),
    (60, "Bare / sparse vegetation", "B4B4B4"),
    (80, "Permanent water bodies", "0064C8"),
    (90, "Herbaceous wetland", "0096A0"),
)
SCL_PERCENTAGES = {  # SCL code -> Sen2Cor metadata name, as PC copies them into properties
    2: "s2:dark_features_percentage",
    3: "s2:cloud_shadow_percentage",
    4: "s2:vegetation_percentage",
    5: "s2:not_vegetated_percentage",
    6: "s2:water_percentage",
    8: "s2:medium_proba_clouds_percentage",
    9: "s2:high_proba_clouds_percentage",
    10: "s2:thin_cirrus_percentage",
}


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def cloud_cover_percent(scl: np.ndarray) -> float:
    """eo:cloud_cover: % of valid SCL pixels flagged cloud (8, 9), cirrus (10) or shadow (3)."""
    valid = np.count_nonzero(scl)
    # Plain floats: a JSON writer such as orjson (which pystac uses when installed) refuses numpy scalars.
    return round(float(100.0 * np.count_nonzero(np.isin(scl, SCL_FLAGGED)) / max(valid, 1)), 6)


def _band_asset(href: str, band: str, proj: dict, offset: int) -> pystac.Asset:
    common, description, centre, fwhm = S2_BAND_META[band]
    gsd = 10 if band in BANDS_10M else 20
    return pystac.Asset(
        href=href,
        media_type=COG_MEDIA_TYPE,
        roles=["data"],
        title=f"{description} - {gsd}m",
        extra_fields={
            "gsd": gsd,
            "eo:bands": [{"name": band, "common_name": common, "description": description,
                          "center_wavelength": centre, "full_width_half_max": fwhm}],
            **proj,
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": gsd,
                              "scale": 0.0001, "offset": -offset / 10000.0 if offset else 0.0}],
        },
    )


def s2_item(
    acq: S2Acquisition,
    geometry: tuple[dict, list[float]],
    scl: np.ndarray,
    assets_proj: dict[str, dict],
    tile: str = S2_TILE,
) -> pystac.Item:
    """A sentinel-2-l2a item of MGRS ``tile``; SCL-derived percentages computed from the SCL raster."""
    valid = max(np.count_nonzero(scl), 1)
    counts = np.bincount(scl.ravel(), minlength=12)
    properties = {
        "platform": acq.platform,
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "eo:cloud_cover": cloud_cover_percent(scl),
        "s2:mgrs_tile": tile,
        "s2:processing_baseline": acq.baseline,
        "s2:product_type": "S2MSI2A",
        "s2:nodata_pixel_percentage": round(float(100.0 * counts[0] / scl.size), 6),
        **{name: round(float(100.0 * counts[code] / valid), 6) for code, name in SCL_PERCENTAGES.items()},
        "sat:orbit_state": "descending",
        "sat:relative_orbit": acq.relative_orbit,
        "proj:epsg": assets_proj["SCL"]["proj:epsg"],
    }
    item = pystac.Item(
        id=acq.item_id(tile),
        geometry=geometry[0],
        bbox=geometry[1],
        datetime=_when(acq.datetime),
        properties=properties,
        stac_extensions=[EXT["eo"], EXT["proj"], EXT["raster"], EXT["sat"]],
    )
    for band in S2_BAND_META:
        item.add_asset(band, _band_asset(f"./{band}.tif", band, assets_proj[band], acq.offset))
    item.add_asset("SCL", pystac.Asset(
        href="./SCL.tif",
        media_type=COG_MEDIA_TYPE,
        roles=["data"],
        title="Scene classification map (SCL)",
        extra_fields={"gsd": 20, **assets_proj["SCL"],
                      "raster:bands": [{"nodata": 0, "data_type": "uint8",
                                        "spatial_resolution": 20}]},
    ))
    return item


def naip_item(
    tile: NaipTile, item_id: str, when: str, geometry: tuple[dict, list[float]], proj: dict
) -> pystac.Item:
    """A naip item with one 4-band uint8 ``image`` asset."""
    item = pystac.Item(
        id=item_id,
        geometry=geometry[0],
        bbox=geometry[1],
        datetime=_when(when),
        properties={"naip:year": when[:4], "naip:state": "ia", "gsd": 1.0, **proj},
        stac_extensions=[EXT["eo"], EXT["proj"], EXT["raster"]],
    )
    item.add_asset("image", pystac.Asset(
        href="./image.tif",
        media_type=COG_MEDIA_TYPE,
        roles=["data"],
        title="RGBIR COG tile",
        extra_fields={
            "eo:bands": [{"name": n, "common_name": NAIP_BAND_META[n][0],
                          "description": NAIP_BAND_META[n][1]} for n in NAIP_BANDS],
            **proj,
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 1.0}
                             for _ in NAIP_BANDS],
        },
    ))
    return item


def naip_item_id(tile: NaipTile, bbox_lonlat: list[float], when: str) -> str:
    """A DOQQ-like id, e.g. ia_m_4109405_ne_15_100_20210715 (quad number unique per tile)."""
    lat = int(np.floor(bbox_lonlat[1]))
    lon = int(np.floor(-bbox_lonlat[0]))
    quad = 1 + 8 * tile.row + tile.col
    quarter = ("ne", "nw", "se", "sw")[(tile.row + tile.col) % 4]
    return f"ia_m_{lat:02d}{lon:03d}{quad:02d}_{quarter}_15_100_{when[:10].replace('-', '')}"


def _classes() -> list[dict]:
    return [{"value": v, "description": d, "color_hint": c} for v, d, c in WORLDCOVER_CLASSES]


def worldcover_item(
    item_id: str, tile_name: str, region: str, geometry: tuple[dict, list[float]], proj: dict
) -> pystac.Item:
    """An esa-worldcover item (EPSG:4326, 1/12000°) with the ``map`` asset."""
    item = pystac.Item(
        id=item_id,
        geometry=geometry[0],
        bbox=geometry[1],
        datetime=None,  # as on Planetary Computer: a yearly product has only start and end
        properties={
            "start_datetime": "2021-01-01T00:00:00Z",
            "end_datetime": "2021-12-31T23:59:59Z",
            "esa_worldcover:product_version": "2.0.0",
            "esa_worldcover:product_tile": tile_name,
            "ackd:demo_region": region,
            **proj,
        },
        stac_extensions=[EXT["proj"], EXT["raster"], EXT["classification"]],
    )
    item.add_asset("map", pystac.Asset(
        href="./map.tif",
        media_type=COG_MEDIA_TYPE,
        roles=["data"],
        title="Land Cover Classes",
        extra_fields={
            **proj,
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 10}],
            "classification:classes": _classes(),
        },
    ))
    return item


def truth_item(item_id: str, region: str, source: str, geometry: tuple[dict, list[float]],
               proj: dict[str, dict]) -> pystac.Item:
    """An item of the demo world's truth collection: ``class``, ``subtype`` and ``factors`` COGs.

    ``ackd:subtypes`` names the sub-type ids (id k is entry k - 1; 0 unknown), ``ackd:factors`` the
    bands of ``factors`` (stored as round(255 * value); ``raster:bands`` scale 1/255).
    """
    item = pystac.Item(
        id=item_id,
        geometry=geometry[0],
        bbox=geometry[1],
        datetime=None,
        properties={
            "start_datetime": "2021-01-01T00:00:00Z",
            "end_datetime": "2023-12-31T23:59:59Z",
            "ackd:demo_region": region,
            "ackd:truth_source": source,
            "ackd:subtypes": list(SUBTYPE_NAMES),
            "ackd:factors": list(FACTORS),
            **proj["class"],
        },
        stac_extensions=[EXT["proj"], EXT["raster"], EXT["classification"]],
    )
    item.add_asset("class", pystac.Asset(
        href="./class.tif", media_type=COG_MEDIA_TYPE, roles=["data"], title="True land cover (WorldCover codes)",
        extra_fields={**proj["class"], "raster:bands": [{"nodata": 0, "data_type": "uint8"}],
                      "classification:classes": _classes()},
    ))
    item.add_asset("subtype", pystac.Asset(
        href="./subtype.tif", media_type=COG_MEDIA_TYPE, roles=["data"], title="True sub-type (ids of ackd:subtypes)",
        extra_fields={**proj["subtype"], "raster:bands": [{"data_type": "uint8"}]},
    ))
    item.add_asset("factors", pystac.Asset(
        href="./factors.tif", media_type=COG_MEDIA_TYPE, roles=["data"], title="Appearance factors (ackd:factors)",
        extra_fields={**proj["factors"], "raster:bands": [{"name": name, "data_type": "uint8", "scale": 1 / FACTOR_SCALE,
                                                          "offset": 0.0} for name in FACTORS]},
    ))
    return item


def _extent(items: list[pystac.Item], start: str, end: str) -> pystac.Extent:
    boxes = np.array([item.bbox for item in items])
    bbox = [float(boxes[:, 0].min()), float(boxes[:, 1].min()),
            float(boxes[:, 2].max()), float(boxes[:, 3].max())]
    return pystac.Extent(pystac.SpatialExtent([bbox]),
                         pystac.TemporalExtent([[_when(start), _when(end)]]))


def collection(collection_id: str, items: list[pystac.Item]) -> pystac.Collection:
    """One of the three demo collections, holding ``items``."""
    spec = _COLLECTIONS[collection_id]
    coll = pystac.Collection(
        id=collection_id,
        title=spec["title"],
        description=spec["description"] + " Synthetic: rendered by ackd-bench's demo world.",
        extent=_extent(items, *spec["interval"]),
        license=spec["license"],
        keywords=spec["keywords"],
        summaries=pystac.Summaries(spec["summaries"]),
        stac_extensions=[EXT["item_assets"], *[EXT[e] for e in spec["extensions"]]],
        extra_fields={"item_assets": spec["item_assets"]},
    )
    for item in items:
        coll.add_item(item)
    return coll


_S2_EO_BANDS = [{"name": b, "common_name": c, "description": d, "center_wavelength": w,
                 "full_width_half_max": f} for b, (c, d, w, f) in S2_BAND_META.items()]
_COLLECTIONS = {
    "sentinel-2-l2a": {
        "title": "Sentinel-2 Level-2A",
        "description": "Sentinel-2 L2A surface reflectance with scene classification (SCL).",
        "interval": ("2021-01-01T00:00:00Z", "2023-12-31T23:59:59Z"),
        "license": "proprietary",
        "keywords": ["Sentinel", "Copernicus", "ESA", "Satellite", "Global", "Imagery",
                     "Reflectance"],
        "summaries": {"gsd": [10, 20], "eo:bands": _S2_EO_BANDS,
                      "platform": ["Sentinel-2A", "Sentinel-2B"], "constellation": ["Sentinel 2"],
                      "instruments": ["msi"]},
        "extensions": ["eo", "proj", "raster", "sat"],
        "item_assets": {
            **{b: {"type": COG_MEDIA_TYPE, "roles": ["data"], "gsd": 10 if b in BANDS_10M else 20,
                   "eo:bands": [e]} for b, e in zip(S2_BAND_META, _S2_EO_BANDS)},
            "SCL": {"type": COG_MEDIA_TYPE, "roles": ["data"], "gsd": 20,
                    "title": "Scene classification map (SCL)"},
        },
    },
    "naip": {
        "title": "NAIP: National Agriculture Imagery Program",
        "description": "Aerial RGB+NIR imagery at 1 m, 4-band uint8 COG tiles (DOQQ-like).",
        "interval": ("2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z"),
        "license": "proprietary",
        "keywords": ["NAIP", "Aerial", "Imagery", "USDA", "AFPO", "Agriculture", "United States"],
        "summaries": {"gsd": [1.0], "eo:bands": [{"name": n, "common_name": c, "description": d}
                                                 for n, (c, d) in NAIP_BAND_META.items()]},
        "extensions": ["eo", "proj", "raster"],
        "item_assets": {"image": {"type": COG_MEDIA_TYPE, "roles": ["data"],
                                  "title": "RGBIR COG tile",
                                  "eo:bands": [{"name": n, "common_name": c, "description": d}
                                               for n, (c, d) in NAIP_BAND_META.items()]}},
    },
    TRUTH_COLLECTION: {
        "title": "ackd-bench demo world: latent truth",
        "description": "The generator's truth under the imagery: true land cover, sub-type and appearance factors.",
        "interval": ("2021-01-01T00:00:00Z", "2023-12-31T23:59:59Z"),
        "license": "CC-BY-4.0",
        "keywords": ["Synthetic", "Ground truth"],
        "summaries": {"ackd:subtypes": list(SUBTYPE_NAMES), "ackd:factors": list(FACTORS)},
        "extensions": ["proj", "raster", "classification"],
        "item_assets": {key: {"type": COG_MEDIA_TYPE, "roles": ["data"]} for key in ("class", "subtype", "factors")},
    },
    "esa-worldcover": {
        "title": "ESA WorldCover",
        "description": "10 m global land cover in 11 classes (this world uses 8 of them).",
        "interval": ("2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z"),
        "license": "CC-BY-4.0",
        "keywords": ["Global", "Land Cover", "Sentinel", "ESA"],
        "summaries": {"esa_worldcover:product_version": ["2.0.0"],
                      "classification:classes": [{"value": v, "description": d, "color_hint": c}
                                                 for v, d, c in WORLDCOVER_CLASSES]},
        "extensions": ["proj", "raster", "classification"],
        "item_assets": {"map": {"type": COG_MEDIA_TYPE, "roles": ["data"],
                                "title": "Land Cover Classes",
                                "classification:classes": [{"value": v, "description": d,
                                                            "color_hint": c}
                                                           for v, d, c in WORLDCOVER_CLASSES]}},
    },
}
