"""Exact sums of float64 vectors through Flower's SecAgg+ (which would otherwise round and average them).

Flower's SecAgg+ quantizes each float ``x`` to ``ceil((clip(x, -c, c) + c) * Q / (2c))`` with stochastic
rounding, sums the integers modulo ``M`` under masks, and hands the server the weighted *mean*. Sent as
is, a clinic's sums would lose all but ~22 bits. Here each value is instead written as a fixed-point
integer ``N = round(v * 2**F)`` split into ``L`` signed limbs of ``B`` bits,

    N = sum_k d_k * 2**(B*k),    d_k an integer in [-2**(B-1), 2**(B-1)),

and the limbs are what SecAgg+ carries, with ``c = 2**(B-1)`` (``clipping_range``) and ``Q = 2**B``
(``quantization_range``). Then Flower's quantizer is the identity shift ``d -> d + c`` (the factor
``Q / (2c)`` is exactly 1.0, ``ceil`` of an integer is itself, so the stochastic correction never fires),
the masked sum modulo ``M`` is exact while ``n * Q < M`` (``2**22 * 1023 < 2**32``: up to 1023 clinics with
the defaults), and with every clinic reporting ``num_examples == max_weight`` the server's vector is the
mean of the limb sums: :func:`limb_sums_from_mean` multiplies by ``n`` and rounds back to the exact integer
limb sums (the float error of Flower's ``1/n`` is below 2**-20 of a unit), and :func:`decode` recombines
them with Python integers.

Range and error (defaults ``F = 40``, ``L = 4``, ``B = 22``):

* a clinic's value must satisfy ``|v| < 2**(L*B - F - 1) - 2**(B*(L-1) - F)`` (about ``1.4e14``);
  :func:`encode` refuses anything outside it, and NaN or infinity, with :class:`FixedPointRangeError`;
* each value is rounded to the nearest multiple of ``2**-F`` (``9.1e-13``), so the decoded sum of ``n``
  answers differs from their exact sum by at most ``n * 2**-(F+1)`` plus half an ulp of float64 for the
  final conversion; the sum of the limbs themselves is exact (no rounding at all).

>>> codec = FixedPoint()
>>> parts = [np.array([1.5, -2.25, 1e-3]), np.array([0.25, 1e9, -7.0])]
>>> decoded = codec.decode(sum(codec.encode(p) for p in parts), n=2)
>>> bool(np.all(decoded == codec.round(parts[0]) + codec.round(parts[1])))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class FixedPointRangeError(ValueError):
    """A value cannot be encoded: not finite, or too large for the fixed-point range."""


@dataclass(frozen=True)
class FixedPoint:
    """The encoding: ``frac_bits`` (F), ``limbs`` (L) signed limbs of ``limb_bits`` (B) each."""

    frac_bits: int = 40
    limbs: int = 4
    limb_bits: int = 22

    def __post_init__(self) -> None:
        if not (1 <= self.limb_bits <= 30 and self.limbs >= 1 and 0 <= self.frac_bits < self.limbs * self.limb_bits):
            raise ValueError(f"unusable fixed-point layout {self}")

    @property
    def clipping_range(self) -> float:
        """Flower's ``clipping_range``: ``c = 2**(B-1)``; every limb is an integer in ``[-c, c)``."""
        return float(1 << (self.limb_bits - 1))

    @property
    def quantization_range(self) -> int:
        """Flower's ``quantization_range``: ``2**B`` (so Flower's quantizer maps ``d`` to ``d + c`` exactly)."""
        return 1 << self.limb_bits

    @property
    def limit(self) -> float:
        """Values must have ``|v| < limit``: ``2**(L*B-F-1) - 2**(B*(L-1)-F)``."""
        bits = self.limbs * self.limb_bits
        return math.ldexp(1.0, bits - self.frac_bits - 1) - math.ldexp(1.0, bits - self.limb_bits - self.frac_bits)

    def max_parties(self, modulus_range: int = 1 << 32) -> int:
        """The most clinics whose limb sums (and Flower's weight factor) stay below ``modulus_range``."""
        return (modulus_range - 1) // self.quantization_range

    def round(self, values: np.ndarray) -> np.ndarray:
        """The values on the fixed-point grid (what a clinic's answer becomes once encoded)."""
        vals = self._checked(values)
        rounded: np.ndarray = np.ldexp(np.rint(np.ldexp(vals, self.frac_bits)), -self.frac_bits)
        return rounded

    def _checked(self, values: np.ndarray) -> np.ndarray:
        vals = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(vals)):
            raise FixedPointRangeError("values that are not finite cannot be sent")
        big = np.abs(vals) >= self.limit
        if np.any(big):
            first = float(vals[np.flatnonzero(big)[0]])
            raise FixedPointRangeError(
                f"{int(big.sum())} value(s) outside the fixed-point range |v| < {self.limit:.6g} (e.g. {first:.6g})"
            )
        return vals

    def encode(self, values: np.ndarray) -> np.ndarray:
        """A flat float vector of length m -> an (L*m,) float64 vector of integer limbs, limb-major.

        Entry ``k*m + i`` is limb ``k`` of value ``i``; every entry is an integer in ``[-c, c)``.
        """
        vals = self._checked(values)
        half = 1 << (self.limb_bits - 1)
        base = 1 << self.limb_bits
        out = np.empty((self.limbs, vals.size), dtype=np.float64)
        for i, v in enumerate(vals.tolist()):
            n = int(round(math.ldexp(v, self.frac_bits)))  # exact: scaling by 2**F is exact, round half even
            for k in range(self.limbs):
                d = (n + half) % base - half if k < self.limbs - 1 else n
                out[k, i] = d
                n = (n - d) >> self.limb_bits
        return out.ravel()

    def limb_sums(self, summed: np.ndarray) -> list[list[int]]:
        """Exact integer limb sums from a vector that must hold integers (refuses anything else)."""
        arr = np.asarray(summed, dtype=np.float64).ravel()
        if arr.size % self.limbs:
            raise ValueError(f"{arr.size} limbs is not a multiple of {self.limbs}")
        if not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)) or np.any(np.abs(arr) >= 2.0**53):
            raise ValueError("limb sums must be integers below 2**53")
        return [[int(x) for x in row] for row in arr.reshape(self.limbs, -1).tolist()]

    def limb_sums_from_mean(self, mean: np.ndarray, n: int) -> np.ndarray:
        """Flower's SecAgg+ result (the mean over ``n`` clinics of the limbs) -> the exact limb sums.

        Refuses a result that is not within 1e-3 of an integer after scaling (a sign that the weights
        were not all equal to ``max_weight`` or the sum overflowed).
        """
        scaled = np.asarray(mean, dtype=np.float64).ravel() * n
        sums = np.rint(scaled)
        if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled - sums) > 1e-3):
            raise ValueError("the secure sum is not a whole number of limbs: weights or range misconfigured")
        if np.any(np.abs(sums) > n * self.clipping_range):
            raise ValueError("the secure sum is out of the limbs' range: modulus overflow")
        return sums

    def decode(self, summed: np.ndarray, n: int) -> np.ndarray:
        """The (exactly summed) limbs of ``n`` encodings -> the float64 sum of the encoded values.

        The integer sum is exact; the only rounding is the final conversion to float64 (half an ulp).
        """
        if n < 1:
            raise ValueError("a sum needs at least one party")
        rows = self.limb_sums(summed)
        bound = n * (1 << (self.limb_bits - 1))
        if any(abs(x) > bound for row in rows for x in row):
            raise ValueError(f"limb sums larger than {n} parties can give")
        out = np.empty(len(rows[0]), dtype=np.float64)
        for i in range(out.size):
            total = sum(rows[k][i] << (self.limb_bits * k) for k in range(self.limbs))
            # int -> float rounds half to even (the one rounding); scaling by 2**-F is exact (no subnormals here)
            out[i] = math.ldexp(float(total), -self.frac_bits)
        return out
