"""Macro layout of a demo region: land-use zones, their classes and sub-types, inclusions, rivers, roads.

The layout is decided once per region on a coarse grid (tens of metres in ``eu``, a few metres in
``us``); :mod:`landcover` then renders any window of it at full resolution. Zones (kilometres) carry
one class each; *inclusions* (tens to a hundred metres: woodlots and ponds in farmland, clearings in
forest, farmsteads) put other classes inside them, so many chips are mixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from .classes import BARE, BUILT, CLASS_CODES, CROP, GRASS, SHRUB, TREE, WATER, WETLAND
from .noise import fbm_grid, hash_uniform, jittered_nearest
from .portable_math import cos, sin
from .subtypes import draw_subtypes

# Random streams: one number per independent field, so adding a field never shifts another.
S_WARP_X, S_WARP_Y, S_ZONES, S_ZONE_ORDER, S_ZONE_ATTR, S_ZONE_SUBTYPE, S_INCLUSION = 1, 2, 3, 4, 5, 6, 7
# What grows inside a zone of each class: (share of inclusion cells taken, ((class, weight), ...)).
INCLUSIONS = {
    CROP: (0.05, ((GRASS, 0.35), (TREE, 0.25), (BUILT, 0.15), (WETLAND, 0.15), (WATER, 0.10))),
    GRASS: (0.055, ((TREE, 0.35), (SHRUB, 0.25), (CROP, 0.20), (WETLAND, 0.10), (BUILT, 0.10))),
    TREE: (0.04, ((GRASS, 0.40), (SHRUB, 0.35), (WETLAND, 0.10), (WATER, 0.15))),
    SHRUB: (0.065, ((GRASS, 0.35), (BARE, 0.25), (TREE, 0.40))),
    BUILT: (0.03, ((GRASS, 0.50), (TREE, 0.50))),
    BARE: (0.05, ((SHRUB, 0.50), (GRASS, 0.30), (WATER, 0.20))),
    WATER: (0.02, ((WETLAND, 1.0),)),
    WETLAND: (0.065, ((WATER, 0.40), (GRASS, 0.30), (TREE, 0.30))),
}


@dataclass(frozen=True)
class RegionStyle:
    """Everything that makes one region look and behave unlike the other.

    Attributes:
        pixel: size of the label-map pixel in metres (the finest imagery of the region).
        coarse: size of the layout grid in metres.
        zone_cell: spacing of land-use zone seeds in metres (zones are ~this size).
        priors: target area fraction per WorldCover code.
        field_angle_spread: parcel orientation spread in degrees (0: cardinal, like the PLSS).
        parcel_width, parcel_length: ranges of field sizes in metres.
        block: range of town block sizes in metres.
        street_width: street width in metres.
        rivers: (half width, riparian buffer) per river in metres; the first is the main one.
        roads: number of meandering main roads (``eu``).
        section_roads: spacing of a cardinal road grid in metres, 0 for none (``us``: 1 mile).
        shore_ring: width range of the reed ring around lakes in metres.
        pivot_fraction: share of crop parcels irrigated by a centre pivot.
        zone_jitter: how far a zone's seed strays from the centre of its lattice square, as a
            share of ``zone_cell`` (0: square zones on a ``zone_cell`` grid).
        zone_warp: amplitude of the domain warp that bends zone edges, in ``zone_cell`` units.
        inclusion_cell: size of inclusion patches in metres (one candidate patch per square).
        inclusion_scale: factor on the shares of :data:`INCLUSIONS` (0: no inclusions).
    """

    name: str
    pixel: float
    coarse: float
    zone_cell: float
    priors: dict[int, float]
    field_angle_spread: float
    parcel_width: tuple[float, float]
    parcel_length: tuple[float, float]
    block: tuple[float, float]
    street_width: float
    rivers: tuple[tuple[float, float], ...]
    roads: int
    section_roads: float
    shore_ring: tuple[float, float]
    pivot_fraction: float
    zone_jitter: float = 0.8
    zone_warp: float = 1.1
    inclusion_cell: float = 120.0
    inclusion_scale: float = 1.0


# Zone priors are set so that, after the land-cover map's errors, every class of the map leaves
# enough candidate chips at scale 1 for the demo preset's per-class budgets (MS 900 chips of 240 m,
# RGB 720 chips of 128 m; see the tests), while keeping each region's character: eu wooded and
# grassy; us with more cropland, towns and wetland than anything else (the map takes much of its
# wetland for grassland or water).
STYLES: dict[str, RegionStyle] = {
    "eu": RegionStyle(
        name="eu",
        pixel=10.0,
        coarse=40.0,
        zone_cell=3000.0,
        priors={TREE: 0.19, SHRUB: 0.10, GRASS: 0.14, CROP: 0.15, BUILT: 0.11, BARE: 0.10,
                WATER: 0.11, WETLAND: 0.10},
        field_angle_spread=180.0,
        parcel_width=(50.0, 220.0),
        parcel_length=(150.0, 450.0),
        block=(70.0, 140.0),
        street_width=10.0,
        rivers=((30.0, 60.0), (10.0, 40.0), (8.0, 30.0)),
        roads=4,
        section_roads=0.0,
        shore_ring=(20.0, 60.0),
        pivot_fraction=0.0,
        inclusion_cell=150.0,
    ),
    "us": RegionStyle(
        name="us",
        pixel=1.0,
        coarse=8.0,
        zone_cell=700.0,
        priors={TREE: 0.12, SHRUB: 0.14, GRASS: 0.05, CROP: 0.12, BUILT: 0.12, BARE: 0.14,
                WATER: 0.11, WETLAND: 0.20},
        field_angle_spread=0.0,
        parcel_width=(180.0, 420.0),
        parcel_length=(200.0, 420.0),
        block=(80.0, 110.0),
        street_width=9.0,
        rivers=((12.0, 25.0), (4.0, 12.0)),
        roads=0,
        section_roads=1609.344,
        shore_ring=(5.0, 18.0),
        pivot_fraction=0.35,
        inclusion_cell=60.0,
    ),
}
# The pair site (demo_world.demo_pair_site): Iowa again, imaged by Sentinel-2 and NAIP alike, laid
# out as square blocks of 3 × 3 Sentinel-2 chips, one land use each, with section roads along
# their edges. The us region's ~700 m zones leave few pure 640 m chips; these blocks leave several
# per class, so paired builds find co-located chips of every class. It keeps the us style name,
# which picks the appearance (spectra, crop calendar), the sub-type priors and the forest type; its
# blocks have no inclusions, so each holds pure chips of its class.
PAIR_BLOCK_M = 1920.0
STYLES["pair"] = replace(STYLES["us"], zone_cell=PAIR_BLOCK_M, zone_jitter=0.0, zone_warp=0.06, rivers=(),
                         section_roads=PAIR_BLOCK_M, inclusion_scale=0.0)


@dataclass(frozen=True)
class Meander:
    """A line that wanders across the region: a river or a main road.

    The centreline is ``v = Σ a·sin(2πu/λ + φ)`` in a frame whose ``u`` axis runs along
    ``angle`` through ``origin``; meander amplitudes stay below ~1/λ so it never folds back.
    """

    origin: tuple[float, float]
    angle: float
    waves: tuple[tuple[float, float, float], ...]  # (amplitude, wavelength, phase)
    half_width: float
    buffer: float
    index: int

    def distance(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Approximate distance (metres) of points to the centreline, and their ``u`` coordinate."""
        c, s = float(cos(self.angle)), float(sin(self.angle))
        dx, dy = x - self.origin[0], y - self.origin[1]
        u = dx * c + dy * s
        v = -dx * s + dy * c
        offset = np.zeros_like(u)
        slope = np.zeros_like(u)
        for amp, wavelength, phase in self.waves:
            arg = 2 * np.pi * u / wavelength + phase
            offset += amp * sin(arg)
            slope += amp * 2 * np.pi / wavelength * cos(arg)
        return np.abs(v - offset) / np.sqrt(1.0 + slope**2), u

    def reach(self) -> float:
        """Largest distance from the frame axis at which the feature can still matter."""
        return sum(a for a, _, _ in self.waves) + self.half_width + self.buffer + 50.0


@dataclass
class Landscape:
    """The macro layout of one region, shared by every window rendered from it.

    Attributes:
        style: the region's style.
        bounds: (minx, miny, maxx, maxy) of the region in its CRS.
        seed: world seed.
        grid_x0, grid_y0: top-left corner of the coarse grid (metres).
        zone: coarse zone index map (int32, rows run south).
        zone_class: WorldCover code per zone index.
        zone_subtype: sub-type id per zone index (objects such as fields and stands draw their own).
        cell_class: WorldCover code per coarse cell: the zone's class, or an inclusion's.
        cell_subtype: sub-type id per coarse cell, likewise.
        water_dist, built_dist: distance (metres) from inside a lake / town to its edge, on
            the coarse grid.
        rivers, roads: linear features.
    """

    style: RegionStyle
    bounds: tuple[float, float, float, float]
    seed: int
    grid_x0: float
    grid_y0: float
    zone: np.ndarray
    zone_class: np.ndarray
    zone_subtype: np.ndarray
    cell_class: np.ndarray
    cell_subtype: np.ndarray
    water_dist: np.ndarray
    built_dist: np.ndarray
    rivers: tuple[Meander, ...]
    roads: tuple[Meander, ...]

    def coarse_class(self) -> np.ndarray:
        """WorldCover code of every coarse cell (inclusions included)."""
        return self.cell_class


def build_landscape(style: RegionStyle, bounds: tuple[float, ...], seed: int) -> Landscape:
    """Lay out zones, assign their classes to the region's priors, and place lines."""
    minx, miny, maxx, maxy = bounds
    margin = 8 * style.coarse
    xs = np.arange(minx - margin, maxx + margin, style.coarse) + style.coarse / 2
    ys = np.arange(maxy + margin, miny - margin, -style.coarse) - style.coarse / 2
    zone = _warped_zones(style, seed, xs, ys)
    inside = _region_mask(xs, ys, bounds)
    zone_class = _assign_classes(style, seed, zone, inside)
    zone_subtype = _zone_subtypes(style, seed, zone_class)
    cell_class, cell_subtype = zone_class[zone], zone_subtype[zone]
    _add_inclusions(style, seed, xs, ys, cell_class, cell_subtype)
    return Landscape(
        style=style,
        bounds=tuple(bounds),
        seed=seed,
        grid_x0=minx - margin,
        grid_y0=maxy + margin,
        zone=zone,
        zone_class=zone_class,
        zone_subtype=zone_subtype,
        cell_class=cell_class,
        cell_subtype=cell_subtype,
        water_dist=_inner_distance(cell_class == WATER, style.coarse),
        built_dist=_inner_distance(cell_class == BUILT, style.coarse),
        rivers=_rivers(style, seed, bounds),
        roads=_main_roads(style, seed, bounds),
    )


def _warped_zones(style: RegionStyle, seed: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Voronoi zones of a jittered seed grid, seen through a smooth domain warp (organic edges)."""
    amp = style.zone_warp * style.zone_cell
    warp_x = amp * fbm_grid(seed, S_WARP_X, xs, ys, 1.5 * style.zone_cell, 4)
    warp_y = amp * fbm_grid(seed, S_WARP_Y, xs, ys, 1.5 * style.zone_cell, 4)
    rows, cols, _, _ = jittered_nearest(
        seed, S_ZONES, xs[None, :] + warp_x, ys[:, None] + warp_y, style.zone_cell, style.zone_jitter
    )
    rows -= rows.min()
    cols -= cols.min()
    return (rows * (cols.max() + 1) + cols).astype(np.int32)


def _region_mask(xs: np.ndarray, ys: np.ndarray, bounds: tuple[float, ...]) -> np.ndarray:
    """True for coarse cells whose centre lies inside the region."""
    minx, miny, maxx, maxy = bounds
    return ((ys > miny) & (ys < maxy))[:, None] & ((xs > minx) & (xs < maxx))[None, :]


def _assign_classes(
    style: RegionStyle, seed: int, zone: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """Give each zone a class so that class areas inside the region follow the priors.

    Zones are visited in a seeded random order. The first ones, among zones mostly inside the
    region, take one class each, so every class occurs even in a small world; each later zone
    takes the class furthest below its quota.
    """
    n_zones = int(zone.max()) + 1
    area = np.bincount(zone[inside], minlength=n_zones).astype(np.float64)
    codes = np.array(CLASS_CODES)
    quota = np.array([style.priors[c] for c in CLASS_CODES]) * area.sum()
    order = np.argsort(hash_uniform(seed, S_ZONE_ORDER, np.arange(n_zones)), kind="stable")
    big = order[area[order] >= 0.5 * np.median(area[area > 0])]
    classes = np.zeros(n_zones, np.uint8)
    assigned = np.zeros(len(codes))
    first = {int(z): k for k, z in enumerate(big[: len(codes)])}
    for z in order:
        if area[z] == 0:
            continue
        k = first.get(int(z), int(np.argmax(quota - assigned)))
        classes[z] = codes[k]
        assigned[k] += area[z]
    outside = np.flatnonzero(area == 0)
    # Zones wholly in the margin only show at the very edge of a warped lookup; draw them
    # from the priors.
    cumulative = np.cumsum(quota / quota.sum())
    picks = np.searchsorted(cumulative, hash_uniform(seed, S_ZONE_ATTR, outside))
    classes[outside] = codes[np.minimum(picks, len(codes) - 1)]
    return classes


def _zone_subtypes(style: RegionStyle, seed: int, zone_class: np.ndarray) -> np.ndarray:
    """A sub-type per zone, drawn from the region's priors for the zone's class."""
    u = hash_uniform(seed, S_ZONE_SUBTYPE, np.arange(len(zone_class)))
    out = np.zeros(len(zone_class), np.uint8)
    for code in CLASS_CODES:
        mine = zone_class == code
        out[mine] = draw_subtypes(style.name, code, u[mine], exclude=("centre_pivot",))
    return out


def _add_inclusions(style: RegionStyle, seed: int, xs: np.ndarray, ys: np.ndarray, cell_class: np.ndarray,
                    cell_subtype: np.ndarray) -> None:
    """Put patches of other classes inside zones (in place): woodlots and ponds in farmland, and so on.

    Patches are the cells of a jittered grid of ``inclusion_cell`` seen through a gentle warp;
    a patch is an inclusion with the probability :data:`INCLUSIONS` gives the class under it, and
    then takes a class (and a sub-type) drawn from that row.
    """
    if style.inclusion_scale <= 0:
        return
    cell = style.inclusion_cell
    warp_x = 0.35 * cell * fbm_grid(seed, S_INCLUSION, xs, ys, 2 * cell, 3)
    warp_y = 0.35 * cell * fbm_grid(seed, S_INCLUSION + 1, xs, ys, 2 * cell, 3)
    rows, cols, _, _ = jittered_nearest(seed, S_INCLUSION, xs[None, :] + warp_x, ys[:, None] + warp_y, cell)
    u = [hash_uniform(seed, S_INCLUSION + 10 + k, rows, cols) for k in range(3)]
    host = cell_class.copy()
    for code, (share, table) in INCLUSIONS.items():
        hit = (host == code) & (u[0] < share * style.inclusion_scale)
        if not hit.any():
            continue
        weights = np.array([w for _, w in table], np.float64)
        pick = np.searchsorted(np.cumsum(weights) / weights.sum(), u[1][hit].astype(np.float64), side="right")
        classes = np.array([c for c, _ in table], np.uint8)[np.minimum(pick, len(table) - 1)]
        cell_class[hit] = classes
        subtypes = np.zeros(len(classes), np.uint8)
        for other in np.unique(classes):
            mine = classes == other
            subtypes[mine] = draw_subtypes(style.name, int(other), u[2][hit][mine], exclude=("centre_pivot",))
        cell_subtype[hit] = subtypes


def _inner_distance(mask: np.ndarray, cell: float) -> np.ndarray:
    """Distance (metres) from each cell inside ``mask`` to the nearest cell outside it."""
    return (ndimage.distance_transform_edt(mask) * cell).astype(np.float32)


def _meander(
    rng: np.random.Generator,
    bounds: tuple[float, ...],
    half_width: float,
    buffer: float,
    amplitude: float,
    wavelength: float,
    index: int,
) -> Meander:
    """A meander through a random interior point of the region in a random direction."""
    minx, miny, maxx, maxy = bounds
    origin = (
        float(minx + (maxx - minx) * rng.uniform(0.2, 0.8)),
        float(miny + (maxy - miny) * rng.uniform(0.2, 0.8)),
    )
    waves, shrink = [], 1.0
    for k in range(3):
        waves.append((float(amplitude * rng.uniform(0.5, 1.0) / 2**k),
                      float(wavelength * rng.uniform(0.8, 1.25) / shrink),
                      float(rng.uniform(0, 2 * np.pi))))
        shrink *= 2.2  # 2.2**k by products (the C library's pow differs between CPUs)
    return Meander(origin, float(rng.uniform(0, np.pi)), tuple(waves), half_width, buffer, index)


def _rivers(style: RegionStyle, seed: int, bounds: tuple[float, ...]) -> tuple[Meander, ...]:
    """Rivers: meander amplitude and wavelength grow with channel width, as in nature."""
    rng = np.random.default_rng([seed, 101])
    return tuple(
        _meander(rng, bounds, half, buffer, amplitude=18 * half, wavelength=120 * half, index=k)
        for k, (half, buffer) in enumerate(style.rivers)
    )


def _main_roads(style: RegionStyle, seed: int, bounds: tuple[float, ...]) -> tuple[Meander, ...]:
    """Main roads: gentle curves of kilometres."""
    rng = np.random.default_rng([seed, 102])
    return tuple(
        _meander(rng, bounds, 6.0, 0.0, amplitude=400.0, wavelength=12000.0, index=k)
        for k in range(style.roads)
    )
