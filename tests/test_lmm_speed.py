"""The engine's speed-ups change no number: fast design path, cached evaluations, gradient sums, BLAS threads.

Each speed-up is checked against the plain computation it replaces (numbers to rounding), never timed:
the timings are in benchmarks/bench_fit.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import patsy
import pytest

from analysis.model.lmm import blas
from analysis.model.lmm import design as ds
from analysis.model.lmm import objective as ob
from analysis.model.lmm import optimize as op
from analysis.model.lmm.evaluator import Evaluator
from analysis.model.lmm.inference import satterthwaite


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    g = 60
    sizes = rng.integers(2, 9, g)
    client = np.repeat([f"c{i:02d}" for i in range(g)], sizes)
    n = client.size
    sex = pd.Categorical(np.repeat(rng.choice(["M", "F", "X"], g), sizes), categories=["M", "F", "X"])
    band = pd.Categorical(np.repeat(rng.choice(["b", "a", "c"], g), sizes), categories=["b", "a", "c"])
    week = rng.uniform(0, 12, n)
    hip = np.repeat(rng.integers(0, 2, g), sizes)
    u0, u1 = np.repeat(rng.normal(0, 1.0, g), sizes), np.repeat(rng.normal(0, 0.1, g), sizes)
    y = 5 + u0 + (-0.3 + u1) * week - 0.1 * week * hip + rng.normal(0, 0.7, n)
    return pd.DataFrame({"client": client, "week": week, "hip": hip, "sex": sex, "band": band, "y": y})


FORMULA = "y ~ week * hip + C(sex) + C(band) + C(sex):week"


def test_categoricals_bare_give_patsys_c_matrix_and_names(frame):
    d = ds.from_formula(frame, FORMULA, "client", "~week")
    _, X = patsy.dmatrices(FORMULA, frame, return_type="dataframe")
    assert d.fixed_names == list(X.columns)
    np.testing.assert_array_equal(d.X, X.to_numpy()[d.order])
    assert "C(sex)[T.F]:week" in d.fixed_names and "C(band)[T.a]" in d.fixed_names


def test_c_of_a_string_column_still_goes_through_patsy(frame):
    data = frame.assign(sex=frame["sex"].astype(str))
    d = ds.from_formula(data, "y ~ week + C(sex)", "client", None)
    assert d.fixed_names == ["Intercept", "C(sex)[T.M]", "C(sex)[T.X]", "week"]  # sorted levels, F first


@pytest.fixture(scope="module")
def design(frame) -> ds.Design:
    return ds.from_formula(frame, FORMULA, "client", "~week")


def _gradient_plain(d: ds.Design, theta: np.ndarray, reml: bool) -> np.ndarray:
    """The gradient from the (G, q, p) Woodbury blocks, as the engine computed it before :func:`ob.sums`."""
    s = ob.solve_pls(d, theta)
    bl = ob.blocks(d, s)
    S = bl.ZVZ.sum(axis=0) - bl.w.T @ bl.w * (d.n_obs - d.p * reml) / s.r2
    if reml:
        PC = (bl.P.reshape(-1, d.p) @ s.unscaled_cov()).reshape(bl.P.shape)
        S = S - np.einsum("gap,gbp->ab", bl.P, PC)
    return ob.grad_from_s((S + S.T) / 2.0, s.T, d.q)


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_from_sums_equals_woodbury_blocks_and_finite_differences(design, reml):
    theta = np.array([0.9, -0.05, 0.12])
    g = ob.gradient(design, theta, reml)
    np.testing.assert_allclose(g, _gradient_plain(design, theta, reml), rtol=1e-9, atol=1e-9)
    h = 1e-6
    fd = [
        (ob.deviance(design, theta + h * e, reml) - ob.deviance(design, theta - h * e, reml)) / (2 * h)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


def test_pls_matches_dense_solution(design):
    """beta and the penalised RSS from the per-group R_ZX against the dense (Z T, X) least-squares system."""
    theta = np.array([0.8, 0.1, 0.3])
    s = ob.solve_pls(design, theta)
    G, q = design.n_groups, design.q
    ZL = np.zeros((design.n_obs, G * q))
    for i, gcode in enumerate(design.group_codes):
        ZL[i, gcode * q : (gcode + 1) * q] = design.Z[i] @ s.T
    A = np.block([[ZL, design.X], [np.eye(G * q), np.zeros((G * q, design.p))]])
    rhs = np.r_[design.y, np.zeros(G * q)]
    sol, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    np.testing.assert_allclose(s.beta, sol[G * q :], rtol=1e-9, atol=1e-10)
    resid = rhs - A @ sol
    assert s.r2 == pytest.approx(float(resid @ resid), rel=1e-10)


def test_evaluator_gives_the_plain_functions_values_and_solves_each_point_once(design):
    ev = Evaluator(design, True)
    theta = np.array([0.7, 0.0, 0.2])
    f, g = ev.deviance_and_gradient(theta)
    assert f == ob.deviance(design, theta, True)
    np.testing.assert_array_equal(g, ob.gradient(design, theta, True))
    np.testing.assert_array_equal(ev.gradient(theta), g)
    assert ev.deviance(theta) == f and ev.solves == 1
    H1 = op.hessian_fd(ev.gradient, theta)
    n = ev.solves
    np.testing.assert_array_equal(op.hessian_fd(ev.gradient, theta), H1)
    assert ev.solves == n  # the second Hessian solved nothing


def test_satterthwaite_reuses_the_fits_points(design):
    opt = op.optimize_theta(design, True)
    assert opt.converged and opt.evaluator is not None
    n = opt.evaluator.solves
    with_ev = satterthwaite(design, opt.theta, True, opt.evaluator)
    assert opt.evaluator.solves == n  # theta +/- h e_k were solved by the convergence proof
    plain = satterthwaite(design, opt.theta, True)
    np.testing.assert_array_equal(with_ev.A, plain.A)
    np.testing.assert_array_equal(with_ev.jac, plain.jac)


def test_moment_start_is_near_the_optimum(design):
    opt = op.optimize_theta(design, True)
    start = op.moment_start(design)
    assert start is not None
    assert ob.deviance(design, start, True) - opt.deviance < ob.deviance(design, ob.theta_start(2), True) - opt.deviance


def test_single_thread_restores_the_blas_thread_counts():
    before = [get() for get, _ in blas._controls()]
    with blas.single_thread():
        assert all(get() == 1 for get, _ in blas._controls())
    assert [get() for get, _ in blas._controls()] == before
