"""Elementary functions that give the same bits on every CPU: the demo world's only transcendentals.

NumPy dispatches ``sin``, ``cos``, ``exp``, ``log`` and ``power`` to SIMD kernels chosen at run time
(AVX-512, AVX2, SSE), and those kernels differ in the last bit. The world rounds reflectance to
integer digital numbers and compares values with thresholds, so one last-bit difference can flip a
stored value: a machine without AVX-512 rendered a different world from the same seed (world v1).

Everything here is built from float64 ``+ - * /``, ``floor``, ``rint`` and ``ldexp``, which IEEE 754
rounds correctly on every CPU, and NumPy applies them element by element without fused
multiply-adds. Accuracy is a few units in the last place, far beyond what the world needs; what
matters is that it is the same everywhere. Scalars go through the same code (``math.sin`` is the C
library's, which also varies between CPUs).
"""

from __future__ import annotations

import numpy as np

# Cody-Waite splits of ln 2 and pi/2: the high parts have trailing zero bits, so n * HI is exact.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2 = 6.07710050650619224932e-11
_PIO2_3 = 2.02226624879595063154e-21
_TWO_OVER_PI = 6.36619772367581382433e-01
_SQRT_HALF = 0.70710678118654752440
PI = 3.14159265358979311600e00


def _f64(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """sum(c_k x^k) by Horner's rule, one rounded operation at a time."""
    out = np.full_like(x, coefficients[-1])
    for c in coefficients[-2::-1]:
        out = out * x + c
    return out


# Taylor coefficients: |r| <= ln2/2 for exp, |r| <= pi/4 for sin and cos.
_EXP = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(15))
_SIN = tuple((-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2, dtype=np.float64))) for k in range(10))
_COS = tuple((-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 1, dtype=np.float64))) for k in range(10))


def exp(x: np.ndarray | float) -> np.ndarray:
    """e**x (float64), for |x| < 700."""
    x = _f64(x)
    n = np.rint(x * _INV_LN2)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    return np.ldexp(_horner(r, _EXP), n.astype(np.int64))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm (float64) of positive finite x; -inf at 0."""
    x = _f64(x)
    mantissa, exponent = np.frexp(np.where(x > 0, x, 1.0))  # x = m * 2**e, m in [0.5, 1)
    low = mantissa < _SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # now in [sqrt(1/2), sqrt(2))
    exponent = (exponent - low).astype(np.float64)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    s2 = s * s
    series = _horner(s2, tuple(1.0 / (2 * k + 1) for k in range(12)))  # atanh series, |s| < 0.172
    out = exponent * _LN2_HI + (exponent * _LN2_LO + 2.0 * s * series)
    return np.where(x > 0, out, -np.inf)


def power(x: np.ndarray | float, p: float) -> np.ndarray:
    """x**p for x >= 0 (0**p = 0 for p > 0), float64."""
    x = _f64(x)
    positive = x > 0
    return np.where(positive, exp(p * log(np.where(positive, x, 1.0))), 0.0)


def _reduce(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = q * pi/2 + r with |r| <= pi/4 (accurate for |x| up to ~1e6); q modulo 4."""
    q = np.rint(x * _TWO_OVER_PI)
    r = ((x - q * _PIO2_1) - q * _PIO2_2) - q * _PIO2_3
    return r, (q.astype(np.int64) & 3)


def _sin_cos(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r2 = r * r
    return r * _horner(r2, _SIN), _horner(r2, _COS)


def sin(x: np.ndarray | float) -> np.ndarray:
    """Sine (float64) of angles in radians."""
    r, q = _reduce(_f64(x))
    s, c = _sin_cos(r)
    return np.select([q == 0, q == 1, q == 2], [s, c, -s], -c)


def cos(x: np.ndarray | float) -> np.ndarray:
    """Cosine (float64) of angles in radians."""
    r, q = _reduce(_f64(x))
    s, c = _sin_cos(r)
    return np.select([q == 0, q == 1, q == 2], [c, -s, -c], s)


def radians(degrees: float) -> float:
    """Degrees to radians (one rounded multiplication)."""
    return float(degrees) * (PI / 180.0)
