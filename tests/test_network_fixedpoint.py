"""Fixed-point limbs: the sum of encodings decodes to the exact sum, also through Flower's own quantizer."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from analysis.network.fixedpoint import FixedPoint, FixedPointRangeError

CODEC = FixedPoint()


def _exact_sum(parts: list[np.ndarray]) -> list[Fraction]:
    """The exact rational sum of the parts as rounded to the grid, then each value rounded once to float64."""
    rounded = [CODEC.round(p) for p in parts]
    return [sum((Fraction(float(r[i])) for r in rounded), Fraction(0)) for i in range(parts[0].size)]


def _random_vector(rng: np.random.Generator, m: int) -> np.ndarray:
    scale = 10.0 ** rng.integers(-14, 13, size=m)
    return rng.standard_normal(m) * scale


@pytest.mark.parametrize("seed", range(40))
def test_decode_of_summed_encodings_is_the_exact_sum(seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 30)), int(rng.integers(1, 12))
    parts = [_random_vector(rng, m) for _ in range(n)]
    got = CODEC.decode(np.sum([CODEC.encode(p) for p in parts], axis=0), n=n)
    exact = _exact_sum(parts)
    assert [Fraction(float(g)) for g in got] == [Fraction(float(e)) for e in exact]  # float(Fraction) rounds once
    # the documented bound against the exact sum of the unrounded inputs: n * 2**-(F+1) + half an ulp
    for i, g in enumerate(got):
        true = sum((Fraction(float(p[i])) for p in parts), Fraction(0))
        assert (
            abs(Fraction(float(g)) - true)
            <= n * Fraction(1, 2 ** (CODEC.frac_bits + 1)) + Fraction(float(np.spacing(abs(g)))) / 2
        )


def test_limbs_are_integers_in_flower_s_range_and_extremes_round_trip():
    lim = CODEC.limit
    vals = np.array([0.0, -0.0, 1.0, -1.0, 2.0**-41, -(2.0**-40), np.nextafter(lim, 0), -np.nextafter(lim, 0), 1e-300])
    limbs = CODEC.encode(vals)
    c = CODEC.clipping_range
    assert np.all(limbs == np.rint(limbs)) and np.all(limbs >= -c) and np.all(limbs < c)
    back = CODEC.decode(limbs, n=1)
    assert np.array_equal(back, CODEC.round(vals))
    assert back[-2] == -np.nextafter(lim, 0) and back[-1] == 0.0


def test_300_parties_at_the_range_edge():
    rng = np.random.default_rng(7)
    parts = [rng.uniform(-1, 1, 5) * CODEC.limit * 0.999 for _ in range(300)]
    parts[0][0] = np.nextafter(CODEC.limit, 0)
    got = CODEC.decode(np.sum([CODEC.encode(p) for p in parts], axis=0), n=300)
    assert [Fraction(float(g)) for g in got] == [Fraction(float(e)) for e in _exact_sum(parts)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2.0**47, -(2.0**47), 1e300])
def test_refuses_values_it_cannot_carry(bad):
    with pytest.raises(FixedPointRangeError):
        CODEC.encode(np.array([1.0, bad]))


def test_other_layouts_and_bad_layouts():
    wide = FixedPoint(frac_bits=52, limbs=5, limb_bits=22)
    v = np.array([math.pi, -1e15, 3e-16])
    assert np.array_equal(wide.decode(wide.encode(v) * 3, n=3), wide.round(v) * 3)
    with pytest.raises(ValueError):
        FixedPoint(limb_bits=31)
    assert CODEC.max_parties() == 1023


def test_flower_s_own_quantize_and_dequantize_are_exact_on_limbs():
    """The SecAgg+ arithmetic of flwr 1.42 (client mod + server workflow), run on limbs, gives the exact sum."""
    quantization = pytest.importorskip("flwr.common.secure_aggregation.quantization")
    arith = pytest.importorskip("flwr.common.secure_aggregation.ndarrays_arithmetic")
    rng = np.random.default_rng(3)
    n, mod = 7, 1 << 32
    c, q = CODEC.clipping_range, CODEC.quantization_range
    parts = [_random_vector(rng, 9) for _ in range(n)]
    masked_total = None
    for p in parts:
        # client (secaggplus_mod._collect_masked_vectors) with num_examples == max_weight
        ratio = 1.0 / 1.0
        q_ratio = round(ratio * q)
        params = arith.parameters_multiply([CODEC.encode(p)], q_ratio / q)
        quantized = quantization.quantize(params, c, q)
        assert np.array_equal(quantized[0], CODEC.encode(p) + c)  # no stochastic rounding happened
        vec = arith.factor_combine(q_ratio, quantized)
        mask = [rng.integers(0, mod, size=a.shape) for a in vec]  # masks cancel; a stand-in for pairwise masks
        vec = arith.parameters_mod(arith.parameters_addition(vec, mask), mod)
        vec = arith.parameters_mod(arith.parameters_subtraction(vec, mask), mod)
        masked_total = vec if masked_total is None else arith.parameters_addition(masked_total, vec)
    assert masked_total is not None
    # server (secaggplus_workflow.unmask_stage)
    recon = arith.parameters_mod(masked_total, mod)
    q_total_ratio, recon = arith.factor_extract(recon)
    aggregated = quantization.dequantize(recon, c, q)
    for vec in aggregated:
        vec += -(n - 1) * c
        vec *= q / q_total_ratio
    sums = CODEC.limb_sums_from_mean(aggregated[0], n)
    got = CODEC.decode(sums, n=n)
    assert [Fraction(float(g)) for g in got] == [Fraction(float(e)) for e in _exact_sum(parts)]
