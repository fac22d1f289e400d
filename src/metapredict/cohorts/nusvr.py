"""Linear-kernel nu-support-vector regression for many samples at once (CIBERSORT's core fit).

CIBERSORT fits one linear nu-SVR per mixture sample: the training points are the genes (a few
hundred), the features are the cell types (about 22), and the fitted weights ``w`` are the
fractions before clipping. libsvm's SMO solver (what ``sklearn.svm.NuSVR`` and R's ``e1071``
call) needs 10^5 or more iterations on a noisy sample here, because the kernel matrix of a
22-column signature has rank 22; that made deconvolution cost about 0.4 s of CPU per sample.

This module solves the same optimisation problem, libsvm's nu-SVR primal with cost ``C``::

    min  1/2 |w|^2 + C (nu l eps + sum_i (xi_i + xi*_i))
    s.t. x_i.w + b - y_i <= eps + xi_i,   y_i - x_i.w - b <= eps + xi*_i,   xi, xi*, eps >= 0

(``l`` genes; libsvm's dual bounds are ``0 <= alpha <= C`` and ``sum(alpha + alpha*) <= C l nu``,
which is this primal), with a primal-dual interior-point method (Mehrotra predictor-corrector).
Each Newton step reduces to a (d + 2) x (d + 2) system in ``(w, b, eps)``, so a step costs
O(l d^2) per sample, and all samples that share a gene set are stepped together with array
operations. It converges in 12-20 steps to the exact optimum (agreeing with libsvm run at
``tol=1e-7`` to about 1e-5 in ``w``; libsvm at its default ``tol=1e-3`` is within about 1e-2).

The rows of ``ys`` are independent problems: a row's answer does not depend on the other rows,
to the last bit (products are taken row by row, see :func:`_rows`).
A row that has not converged after :data:`MAX_STEPS` steps is solved with libsvm instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: Stop when the mean complementarity and the primal residuals are below this (the data are
#: z-scored, so this is relative to a unit scale); dual residuals are scaled by ``1 + C l``.
TOLERANCE: Final = 1e-9
#: Newton steps before a row is handed to libsvm (typical: 12-20).
MAX_STEPS: Final = 60
#: Fraction of the way to the boundary of the positive orthant a step may go.
STEP_FRACTION: Final = 0.99


def _rows(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b`` one row of ``a`` at a time, so a row's result never depends on the other rows.

    A plain matrix product hands the whole block to BLAS, whose summation order (and so the
    last bits of a row's result) depends on how many rows there are; a stack of 1-row products
    is computed the same way for every row.
    """
    out: FloatArray = np.matmul(a[:, None, :], b)[:, 0, :]
    return out


class _State:
    """Primal, slack and dual variables of a batch of problems (one row per problem)."""

    def __init__(self, rows: int, genes: int, types: int, cost: float) -> None:
        self.u = np.zeros((rows, types + 2))  # w (types), b, eps
        self.xi = np.zeros((rows, genes))
        self.xs = np.zeros((rows, genes))
        # constraints: 0, 1 the two sides of the tube; 2, 3 xi >= 0, xi* >= 0; 4 eps >= 0
        self.s = [np.ones((rows, genes)) for _ in range(4)] + [np.ones((rows, 1))]
        self.lam = [np.full((rows, genes), 0.5 * cost) for _ in range(4)] + [np.ones((rows, 1))]

    def take(self, keep: NDArray[np.bool_]) -> None:
        self.u, self.xi, self.xs = self.u[keep], self.xi[keep], self.xs[keep]
        self.s = [a[keep] for a in self.s]
        self.lam = [a[keep] for a in self.lam]


@dataclass
class _System:
    """One Newton system: residuals at the current point and the reduced (d + 2) matrix."""

    x: FloatArray
    xt: FloatArray
    st: _State
    primal: list[FloatArray]
    r_u: FloatArray
    r_xi: FloatArray
    r_xs: FloatArray
    weights: list[FloatArray]
    matrix: FloatArray

    def solve(
        self, rc: list[FloatArray]
    ) -> tuple[FloatArray, FloatArray, FloatArray, list[FloatArray], list[FloatArray]]:
        """Steps (du, dxi, dxi*, ds, dlambda) for complementarity residuals ``rc``."""
        d = self.x.shape[1]
        st, w = self.st, self.weights
        q = [
            (-c + lam * pr) / s for c, lam, pr, s in zip(rc, st.lam, self.primal, st.s, strict=True)
        ]
        rx = -self.r_xi + q[0] + q[2]
        rs = -self.r_xs + q[1] + q[3]
        a = w[0] / (w[0] + w[2]) * rx
        c = w[1] / (w[1] + w[3]) * rs
        # right-hand side of the (w, b, eps) system, with xi and xi* eliminated
        both = (a - c) - (q[0] - q[1])
        rhs = -self.r_u
        rhs[:, :d] += _rows(both, self.x)
        rhs[:, d] += both.sum(axis=1)
        rhs[:, d + 1] += q[0].sum(axis=1) + q[1].sum(axis=1) + q[4][:, 0]
        rhs[:, d + 1] -= a.sum(axis=1) + c.sum(axis=1)
        du = np.asarray(np.linalg.solve(self.matrix, rhs[:, :, None])[:, :, 0], dtype=np.float64)
        fdu = _rows(du[:, :d], self.xt) + du[:, d : d + 1]
        de = du[:, d + 1 : d + 2]
        a1 = fdu - de
        a2 = -fdu - de
        dxi = (rx + w[0] * a1) / (w[0] + w[2])
        dxs = (rs + w[1] * a2) / (w[1] + w[3])
        g = [a1 - dxi, a2 - dxs, -dxi, -dxs, -de]
        ds = [-pr - gi for pr, gi in zip(self.primal, g, strict=True)]
        dl = [(-c - lam * dsi) / s for c, lam, dsi, s in zip(rc, st.lam, ds, st.s, strict=True)]
        return du, dxi, dxs, ds, dl


def _longest(st: _State, ds: list[FloatArray], dl: list[FloatArray]) -> FloatArray:
    """Per row, the longest step (at most 1) that keeps slacks and multipliers non-negative."""
    step = np.ones(st.u.shape[0])
    for v, dv in zip(st.s + st.lam, ds + dl, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(dv < 0, -v / dv, np.inf)
        step = np.minimum(step, ratio.min(axis=1))
    return step


def linear_nusvr(
    x: FloatArray,
    ys: FloatArray,
    nu: float,
    *,
    cost: float = 1.0,
    tolerance: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
) -> FloatArray:
    """Weights ``w`` (rows x d) of a linear nu-SVR of each row of ``ys`` on ``x`` (genes x d)."""
    genes, d = x.shape
    n = ys.shape[0]
    out = np.full((n, d), np.nan)
    if n == 0:
        return out
    eps_col = d + 1
    xt = np.ascontiguousarray(x.T)
    xb = np.hstack([x, np.ones((genes, 1))])
    # Per gene, the outer product of (x_i, 1) with itself: one product per row then gives the
    # row's weighted sum of them (the (w, b) block of the Newton system).
    outer = (xb[:, :, None] * xb[:, None, :]).reshape(genes, (d + 1) ** 2)
    diag_w = np.arange(d)
    budget = cost * nu * genes
    count = 4 * genes + 1
    st = _State(n, genes, d, cost)
    y = np.ascontiguousarray(ys, dtype=float)
    active = np.arange(n)

    for _ in range(max_steps):
        w, b, eps = st.u[:, :d], st.u[:, d : d + 1], st.u[:, eps_col : eps_col + 1]
        fx = _rows(w, xt) + b
        primal = [
            fx - eps - st.xi + st.s[0] - y,
            -fx - eps - st.xs + st.s[1] + y,
            -st.xi + st.s[2],
            -st.xs + st.s[3],
            -eps + st.s[4],
        ]
        l1, l2, _, _, l5 = st.lam
        diff = l1 - l2
        r_u = np.empty_like(st.u)
        r_u[:, :d] = w + _rows(diff, x)
        r_u[:, d] = diff.sum(axis=1)
        r_u[:, eps_col] = budget - l1.sum(axis=1) - l2.sum(axis=1) - l5[:, 0]
        r_xi = cost - st.lam[0] - st.lam[2]
        r_xs = cost - st.lam[1] - st.lam[3]
        mu = sum((s * lam).sum(axis=1) for s, lam in zip(st.s, st.lam, strict=True)) / count
        p_res = np.max([np.abs(a).max(axis=1) for a in primal], axis=0)
        d_res = np.max([np.abs(a).max(axis=1) for a in (r_u, r_xi, r_xs)], axis=0)
        finite = np.isfinite(mu) & np.isfinite(p_res) & np.isfinite(d_res)
        done = finite & (mu < tolerance) & (p_res < tolerance)
        done &= d_res < tolerance * (1 + cost * genes)
        if (done | ~finite).any():
            out[active[done]] = st.u[done, :d]
            keep = finite & ~done
            active = active[keep]
            if active.size == 0:
                break
            st.take(keep)
            y = y[keep]
            primal = [a[keep] for a in primal]
            r_u, r_xi, r_xs, mu = r_u[keep], r_xi[keep], r_xs[keep], mu[keep]
        k = active.size

        wts = [lam / s for s, lam in zip(st.s, st.lam, strict=True)]
        e1 = wts[0] * wts[2] / (wts[0] + wts[2])
        e2 = wts[1] * wts[3] / (wts[1] + wts[3])
        matrix = np.zeros((k, d + 2, d + 2))
        matrix[:, : d + 1, : d + 1] = _rows(e1 + e2, outer).reshape(k, d + 1, d + 1)
        matrix[:, diag_w, diag_w] += 1.0
        cross = _rows(e2 - e1, xb)
        matrix[:, : d + 1, eps_col] = cross
        matrix[:, eps_col, : d + 1] = cross
        matrix[:, eps_col, eps_col] = e1.sum(axis=1) + e2.sum(axis=1) + wts[4][:, 0]
        system = _System(x, xt, st, primal, r_u, r_xi, r_xs, wts, matrix)

        # predictor (affine scaling) step, then Mehrotra's corrector with centring
        rc = [s * lam for s, lam in zip(st.s, st.lam, strict=True)]
        _, _, _, ds, dl = system.solve(rc)
        alpha = _longest(st, ds, dl)[:, None]
        mu_aff = (
            sum(
                ((s + alpha * dsi) * (lam + alpha * dli)).sum(axis=1)
                for s, dsi, lam, dli in zip(st.s, ds, st.lam, dl, strict=True)
            )
            / count
        )
        sigma_mu = ((mu_aff / mu) ** 3 * mu)[:, None]
        rc = [c + dsi * dli - sigma_mu for c, dsi, dli in zip(rc, ds, dl, strict=True)]
        du, dxi, dxs, ds, dl = system.solve(rc)
        alpha = np.minimum(1.0, STEP_FRACTION * _longest(st, ds, dl))[:, None]
        st.u += alpha * du
        st.xi += alpha * dxi
        st.xs += alpha * dxs
        st.s = [s + alpha * dsi for s, dsi in zip(st.s, ds, strict=True)]
        st.lam = [lam + alpha * dli for lam, dli in zip(st.lam, dl, strict=True)]

    left = np.flatnonzero(np.isnan(out).any(axis=1))
    if left.size:
        from sklearn.svm import NuSVR

        logger.debug("%d nu-SVR fit(s) handed to libsvm (no convergence)", left.size)
        for row in left:
            model = NuSVR(kernel="linear", nu=nu, C=cost).fit(x, ys[row])
            out[row] = np.asarray(model.coef_, dtype=float).ravel()
    return out
