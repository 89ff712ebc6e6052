"""A clinic's answer: the profiled-REML pieces of the network model, summed over its own clients.

The network model is the primary model with one intercept per clinic:

    y = 1 alpha_k + X_c beta + Z b + e,   b_i ~ N(0, sigma^2 T T'),   e ~ N(0, sigma^2 I)

for the clients i of clinic k (random intercept and week slope per client, as in
:mod:`analysis.model.lmm`). Fitted to every clinic's records in one data frame this is lme4's
``lmer(y ~ clinic + week * hip + covariates + (week | client))``.

Everything lme4 needs at a given ``theta`` is a sum over clients (:mod:`analysis.model.lmm.objective`
gives the formulas), except that the clinic intercepts make ``X'V^-1 X`` a bordered matrix. Each
clinic **absorbs its own intercept** by block elimination (the within transformation, done at
``V^-1``): with ``C_k = X_k'V_k^-1 X_k`` split into the intercept ``a`` and the common columns ``c``,

- ``S_k = C_cc - C_ca C_ac / C_aa`` (the Schur complement; ``X'V^-1 X`` for beta is ``sum_k S_k``),
- ``r_k = X_c'V^-1 y - C_ca (1'V^-1 y) / C_aa``,  ``yy_k = y'V^-1 y - (1'V^-1 y)^2 / C_aa``,
- ``log|X'V^-1 X| = log|sum_k S_k| + sum_k log C_aa,k``,

so that ``beta = (sum S_k)^-1 sum r_k`` and ``r2 = sum yy_k - r' beta``: the clinic intercepts never
leave the clinic, and nothing in an answer is indexed by clinic. The exact gradient needs, per client
``g``, ``P~_g = P_gc - P_ga u'`` (``u = C_ac / C_aa``; ``P_g = Z_g'V_g^-1 X_g``) and
``a~_g = Z_g'V_g^-1 y_g - P_ga (1'V^-1 y) / C_aa``, summed as ``sum a~ a~'``, ``sum a~ (x) P~`` and
``sum P~ (x) P~`` (``w_g = a~_g - P~_g beta``; the REML term
``sum_g P_g K P_g' = sum_g P~_g S^-1 P~_g' + sum_g P_ga P_ga' / C_aa``). The derivation is in
:mod:`analysis.network.engine`'s docstring; the tests check every piece against the single-data-frame
engine and lme4.

The answer to one ``theta`` is one flat vector (:func:`pack`), the same layout at every clinic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from analysis.model.lmm import objective as ob
from analysis.model.lmm.design import Design


@dataclass(frozen=True)
class Pieces:
    """One clinic's (or, summed, the network's) pieces at one theta; pc = number of common columns."""

    n: np.ndarray  # (1,) observations
    ldL2: np.ndarray  # (1,) sum_g log|T'Z'ZT + I|
    ldA: np.ndarray  # (1,) log C_aa
    yy: np.ndarray  # (1,)
    S: np.ndarray  # (pc, pc)
    r: np.ndarray  # (pc,)
    A: np.ndarray  # (q, q) sum_g Z'V^-1 Z
    Baa: np.ndarray  # (q, q) sum_g P_ga P_ga' / C_aa
    Saa: np.ndarray  # (q, q) sum_g a~ a~'
    SaP: np.ndarray  # (q, q, pc) sum_g a~ (x) P~
    SPP: np.ndarray  # (q, pc, q, pc) sum_g P~ (x) P~

    def __add__(self, other: Pieces) -> Pieces:
        return Pieces(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def shapes(q: int, pc: int) -> dict[str, tuple[int, ...]]:
    """The shape of every field of :class:`Pieces`, in packing order."""
    return {
        "n": (1,),
        "ldL2": (1,),
        "ldA": (1,),
        "yy": (1,),
        "S": (pc, pc),
        "r": (pc,),
        "A": (q, q),
        "Baa": (q, q),
        "Saa": (q, q),
        "SaP": (q, q, pc),
        "SPP": (q, pc, q, pc),
    }


#: fields that are symmetric matrices (SPP as a (q pc) x (q pc) matrix): only their upper triangle is sent
SYMMETRIC = {"S", "A", "Baa", "Saa", "SPP"}


def _square(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[: len(shape) // 2]))


def _length(name: str, shape: tuple[int, ...]) -> int:
    if name in SYMMETRIC:
        m = _square(shape)
        return m * (m + 1) // 2
    return int(np.prod(shape))


def size(q: int, pc: int) -> int:
    """Length of one packed :class:`Pieces`."""
    return sum(_length(name, shape) for name, shape in shapes(q, pc).items())


def pack(p: Pieces) -> np.ndarray:
    """Flatten in the order of :func:`shapes`; symmetric fields by their upper triangle (row-major)."""
    parts = []
    for name, shape in shapes(p.A.shape[0], p.r.size).items():
        value = np.asarray(getattr(p, name), dtype=float)
        if name in SYMMETRIC:
            m = _square(shape)
            parts.append(value.reshape(m, m)[np.triu_indices(m)])
        else:
            parts.append(np.ravel(value))
    return np.concatenate(parts)


def unpack(vec: np.ndarray, q: int, pc: int) -> Pieces:
    """Inverse of :func:`pack` (symmetric fields filled from their upper triangle)."""
    out, at = {}, 0
    for name, shape in shapes(q, pc).items():
        k = _length(name, shape)
        chunk = np.asarray(vec[at : at + k], dtype=float)
        if name in SYMMETRIC:
            m = _square(shape)
            full = np.zeros((m, m))
            full[np.triu_indices(m)] = chunk
            full = full + np.triu(full, 1).T
            out[name] = full.reshape(shape)
        else:
            out[name] = chunk.reshape(shape)
        at += k
    if at != vec.size:
        raise ValueError(f"pieces vector has length {vec.size}, expected {at}")
    return Pieces(**out)


def clinic_pieces(d: Design, theta: np.ndarray) -> Pieces:
    """The pieces of one clinic at ``theta``. ``d``'s first fixed column is the clinic's intercept.

    Raises numpy.linalg.LinAlgError when ``T'Z'ZT + I`` or ``C_aa`` is not positive (a theta off the
    parameter space, or a clinic without observations).
    """
    q = d.q
    T = ob.make_T(np.asarray(theta, dtype=float), q)
    Minv, logdet = ob.inv_logdet(T.T @ d.ZtZ @ T + np.eye(q))
    H = T @ Minv @ T.T
    C = d.XtX - ob.gsum(d.ZtX, H @ d.ZtX)
    C = (C + C.T) / 2.0
    rhs = d.Xty - ob.gsum(d.ZtX, (H @ d.Zty[..., None]))[:, 0]
    yVy = float(d.yty - np.einsum("ga,gab,gb->", d.Zty, H, d.Zty))
    Caa = float(C[0, 0])
    if not Caa > 0:
        raise np.linalg.LinAlgError("the clinic's intercept has no information (C_aa <= 0)")
    u = C[0, 1:] / Caa
    ZtZH = d.ZtZ @ H
    P = d.ZtX - ZtZH @ d.ZtX
    a = d.Zty - (ZtZH @ d.Zty[..., None])[..., 0]
    Pa, Pc = P[:, :, 0], P[:, :, 1:]
    Pt = Pc - Pa[:, :, None] * u[None, None, :]
    at = a - Pa * (rhs[0] / Caa)
    return Pieces(
        n=np.array([float(d.n_obs)]),
        ldL2=np.array([float(logdet.sum())]),
        ldA=np.array([np.log(Caa)]),
        yy=np.array([yVy - rhs[0] ** 2 / Caa]),
        S=C[1:, 1:] - np.outer(C[0, 1:], C[0, 1:]) / Caa,
        r=rhs[1:] - C[0, 1:] * (rhs[0] / Caa),
        A=(d.ZtZ - ZtZH @ d.ZtZ).sum(axis=0),
        Baa=Pa.T @ Pa / Caa,
        Saa=at.T @ at,
        SaP=np.einsum("ga,gbp->abp", at, Pt),
        SPP=np.einsum("gap,gbr->apbr", Pt, Pt),
    )
