"""Coordinate-addressed random fields for the demo world: hashes, value noise, jittered cells.

Every field here is a pure function of (seed, stream, coordinates), never of a generator's state,
so any window of the world (a NAIP tile, a Sentinel-2 scene, a test crop) renders identically and
seamlessly whatever order or tiling it is rendered in.
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_KEY_MULT = np.uint64(0xD6E8FEB86659FD93)


def _splitmix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a 1-d uint64 array (arithmetic wraps modulo 2**64)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def hash_key(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Hash integer keys (broadcast together) to uint64; same inputs, same output, anywhere."""
    arrays = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in keys])
    shape = arrays[0].shape if arrays else ()
    start = _splitmix(np.array([(seed * 1_000_003 + stream * 7919) & (2**64 - 1)], np.uint64))
    # 1-d arrays throughout: numpy warns on overflow of *scalar* uint64 maths, never of arrays.
    h = np.full(max(1, int(np.prod(shape))), start[0], np.uint64)
    for key in arrays:
        h = (h ^ key.reshape(-1).astype(np.uint64)) * _KEY_MULT + _GOLDEN
    return _splitmix(h).reshape(shape)


def hash_uniform(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform float32 in [0, 1) per key tuple (24 bits of the hash)."""
    h = hash_key(seed, stream, *keys)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def _axis_weights(coords: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index below each coordinate and its C1 smoothstep interpolation weight."""
    pos = np.asarray(coords, dtype=np.float64) / cell
    i0 = np.floor(pos).astype(np.int64)
    t = (pos - i0).astype(np.float32)
    return i0, t * t * (np.float32(3.0) - np.float32(2.0) * t)


def _lattice(seed: int, stream: int, cell: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Lattice values in [-1, 1) for the rectangle rows × cols of the lattice."""
    values = hash_uniform(seed, stream, int(cell * 1000), rows[:, None], cols[None, :])
    return values * np.float32(2.0) - np.float32(1.0)


def value_noise_grid(
    seed: int, stream: int, xs: np.ndarray, ys: np.ndarray, cell: float
) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the grid ys × xs (metres), lattice spacing ``cell``.

    Separable: the lattice is interpolated along x for the lattice rows in use, then along y,
    so the cost is a few operations per output pixel whatever the lattice size.

    Returns:
        float32 array of shape (len(ys), len(xs)).
    """
    ix, sx = _axis_weights(xs, cell)
    iy, sy = _axis_weights(ys, cell)
    x_first, y_first = int(ix.min()), int(iy.min())
    lattice = _lattice(
        seed,
        stream,
        cell,
        np.arange(y_first, int(iy.max()) + 2),
        np.arange(x_first, int(ix.max()) + 2),
    )
    cols = ix - x_first
    along_x = lattice[:, cols] * (np.float32(1.0) - sx) + lattice[:, cols + 1] * sx
    rows = iy - y_first
    return along_x[rows] * (np.float32(1.0) - sy)[:, None] + along_x[rows + 1] * sy[:, None]


def value_noise_points(
    seed: int, stream: int, x: np.ndarray, y: np.ndarray, cell: float
) -> np.ndarray:
    """Value noise in [-1, 1] at arbitrary points (any shape), e.g. rotated or warped ones."""
    ix, sx = _axis_weights(x, cell)
    iy, sy = _axis_weights(y, cell)
    x_first, y_first = int(ix.min()), int(iy.min())
    lattice = _lattice(
        seed,
        stream,
        cell,
        np.arange(y_first, int(iy.max()) + 2),
        np.arange(x_first, int(ix.max()) + 2),
    )
    flat = lattice.ravel()
    width = lattice.shape[1]
    base = (iy - y_first) * width + (ix - x_first)
    one = np.float32(1.0)
    top = flat[base] * (one - sx) + flat[base + 1] * sx
    bottom = flat[base + width] * (one - sx) + flat[base + width + 1] * sx
    return top * (one - sy) + bottom * sy


def fbm_grid(
    seed: int,
    stream: int,
    xs: np.ndarray,
    ys: np.ndarray,
    cell: float,
    octaves: int,
    gain: float = 0.5,
    min_cell: float = 0.0,
) -> np.ndarray:
    """Fractal (fBm) value noise on a grid; the octave amplitudes are normalised to sum to 1.

    Octaves finer than ``min_cell`` (e.g. below the pixel size) are skipped: they would alias.
    """
    total = np.zeros((len(ys), len(xs)), np.float32)
    norm, amp = 0.0, 1.0
    for octave in range(octaves):
        octave_cell = cell / 2**octave
        if octave and octave_cell < min_cell:
            break
        if octave:
            amp *= gain  # gain**octave by products: the same bits everywhere, unlike the C library's pow
        total += np.float32(amp) * value_noise_grid(seed, stream * 64 + octave, xs, ys, octave_cell)
        norm += amp
    return total / np.float32(norm)


def fbm_points(
    seed: int,
    stream: int,
    x: np.ndarray,
    y: np.ndarray,
    cell: float,
    octaves: int,
    gain: float = 0.5,
) -> np.ndarray:
    """Fractal value noise at arbitrary points; octave amplitudes normalised to sum to 1."""
    total = np.zeros(np.shape(x), np.float32)
    norm, amp = 0.0, 1.0
    for octave in range(octaves):
        if octave:
            amp *= gain
        noise = value_noise_points(seed, stream * 64 + octave, x, y, cell / 2**octave)
        total += np.float32(amp) * noise
        norm += amp
    return total / np.float32(norm)


def seed_position(
    seed: int, stream: int, row: np.ndarray, col: np.ndarray, cell: float, jitter: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Position (x, y in metres) of the jittered seed of lattice square (row, col)."""
    ux = hash_uniform(seed, stream, row, col, 0).astype(np.float64)
    uy = hash_uniform(seed, stream, row, col, 1).astype(np.float64)
    return (col + 0.5 + jitter * (ux - 0.5)) * cell, (row + 0.5 + jitter * (uy - 0.5)) * cell


def jittered_nearest(
    seed: int,
    stream: int,
    x: np.ndarray,
    y: np.ndarray,
    cell: float,
    jitter: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest seed of a jittered grid (one seed per ``cell`` square) for every point.

    Each seed sits at a hashed offset inside its own square, so only the 3 × 3 neighbouring
    squares can hold the nearest one; their positions come from a small table, not a hash per
    point.

    Returns:
        (row, col, dx, dy): int64 lattice square of the nearest seed, and float64 offsets of the
        point from that seed (metres).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    gx = np.floor(x / cell).astype(np.int64)
    gy = np.floor(y / cell).astype(np.int64)
    row0, col0 = int(gy.min()) - 1, int(gx.min()) - 1
    rows = np.arange(row0, int(gy.max()) + 2)
    cols = np.arange(col0, int(gx.max()) + 2)
    table_x, table_y = seed_position(seed, stream, rows[:, None], cols[None, :], cell, jitter)
    table_x, table_y = table_x.ravel(), table_y.ravel()
    width = len(cols)
    best = np.full(x.shape, np.inf)
    best_flat = np.zeros(x.shape, np.int64)
    centre = (gy - row0) * width + (gx - col0)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat = centre + dy * width + dx
            dist = (x - table_x[flat]) ** 2 + (y - table_y[flat]) ** 2
            closer = dist < best
            best = np.where(closer, dist, best)
            best_flat = np.where(closer, flat, best_flat)
    return (
        best_flat // width + row0,
        best_flat % width + col0,
        x - table_x[best_flat],
        y - table_y[best_flat],
    )


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance noise (float32): the sum of two uniform bytes, a triangle.

    Built from the generator's raw bytes and integer sums, so it is the same on every CPU (NumPy's
    Gaussian sampler calls the C library's ``exp``/``log`` in its tails, which are not).
    """
    n = int(np.prod(shape))
    pair = np.frombuffer(rng.bytes(2 * n), np.uint8).reshape(2, n)
    centred = pair[0].astype(np.int16) + pair[1] - np.int16(255)
    return (centred.astype(np.float32) * np.float32(math.sqrt(6.0) / 255.0)).reshape(shape)
