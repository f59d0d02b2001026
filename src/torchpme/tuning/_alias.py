"""The pair terms of the mesh estimates without cancellation.

Written as ``Σ_θ G̃² S_D S_W − 2 (cross) + (exact)``, the mean squared pair error
of :func:`torchpme.tuning._kspace_errors.mesh_errors` is a difference of terms of
the size of the forces themselves: in float64 it cannot resolve errors below
about ``1e-8`` of them, and that noise grows with the mesh. Here each mesh
frequency ``θ`` contributes the same sum of squares regrouped:

.. math::

    \\Big| G̃ D̂_0 Ŵ_0^* − i k_0 G(k_0) \\Big|^2
    + G̃^2 \\Big( Σ_M |D̂_M|^2 Σ_M |Ŵ_M|^2 − |D̂_0|^2 |Ŵ_0|^2 \\Big),

the error of the principal alias ``M = 0`` (a difference of values, not of
squares) plus the aliasing, a sum of positive terms expanded axis by axis in the
non-principal parts ``Σ_{M≠0}`` of the 1-D alias sums, which are summed directly
where subtracting the principal term would lose them. The exact-kernel terms of
the reciprocal vectors that are not principal frequencies of the mesh follow as
before. The potentials get the same with ``Ŵ`` for ``D̂`` and 1 for ``k``.
"""

import math
from typing import List, Tuple

import numpy as np

from ._fourier import MeshWeight, contract, coulomb_kernel

# non-principal aliases summed directly: |M| <= _M_MAX
_M_MAX = 24
# subtracting the principal term keeps this relative precision or better
_RELATIVE = 1e-6


def _split(weight, theta: np.ndarray):
    """Principal values and non-principal sums of ``|ŵ|²``, ``Im ŵ'ŵ*``,
    ``|ŵ'|²`` at ``θ``: ``((p_ww, p_dw, p_dd), (q_ww, q_dw, q_dd))``."""
    w0, d0 = weight.transform(theta)
    principal = (np.abs(w0) ** 2, (d0 * np.conj(w0)).imag, np.abs(d0) ** 2)
    ww, dw, dd = weight.alias_sums(theta)
    full = (ww.real, dw.imag, dd)
    shifts = (
        2.0
        * math.pi
        * np.concatenate([np.arange(-_M_MAX, 0), np.arange(1, _M_MAX + 1)])
    )
    w_m, d_m = weight.transform_far((theta[:, None] + shifts[None, :]).reshape(-1))
    w_m = w_m.reshape(len(theta), -1)
    d_m = d_m.reshape(len(theta), -1)
    direct = (
        np.sum(np.abs(w_m) ** 2, axis=1),
        np.sum((d_m * np.conj(w_m)).imag, axis=1),
        np.sum(np.abs(d_m) ** 2, axis=1),
    )
    # the Poisson sums are of coefficients of order one: their rounding error is
    # set by the coefficients, not by the (possibly tiny) sum
    rest = []
    for f, p, q, scale in zip(full, principal, direct, weight.alias_scales()):
        subtracted = f - p
        good = np.abs(subtracted) > _RELATIVE * scale
        rest.append(np.where(good, subtracted, q))
    return principal, tuple(rest)


def _products(first, second):
    """Per axis, ``X = A B`` of two alias sums split as ``p + q``: the principal
    ``p_A p_B``, the full product and the non-principal part ``X − p_A p_B``."""
    (pa, qa), (pb, qb) = first, second
    full = (pa + qa) * (pb + qb)
    return pa * pb, full, qa * (pb + qb) + pa * qb


def pair_terms(
    weight: MeshWeight, geometry, g_tilde: np.ndarray
) -> Tuple[float, float, np.ndarray]:
    """``(V² E_pair, V² E^V_pair, rest)`` of the mesh on ``geometry`` (the
    frequencies of :func:`~torchpme.tuning._kspace_errors.mesh_errors`) with
    filter ``g_tilde``, over the principal frequencies of the mesh and their
    aliases (see the module docstring); ``rest`` marks the exact-kernel vectors
    that are not a principal frequency, whose terms the caller adds."""
    thetas, nb = geometry.thetas, geometry.nb
    metric = nb @ nb.T
    splits = [_split(weight, t) for t in thetas]
    # (p, q) of ww, dw, dd per axis
    ww = [(s[0][0], s[1][0]) for s in splits]
    dw = [(s[0][1], s[1][1]) for s in splits]
    dd = [(s[0][2], s[1][2]) for s in splits]
    g2 = g_tilde**2

    aliasing = 0.0
    for d in range(3):
        for e in range(3):
            factors: List[tuple] = []
            for f in range(3):
                if d == e == f:
                    factors.append(_products(dd[f], ww[f]))
                elif f in (d, e) and d != e:
                    factors.append(_products(dw[f], ww[f]))
                else:
                    factors.append(_products(ww[f], ww[f]))
            (p0, _, q0), (p1, x1, q1), (_, x2, q2) = factors
            total = contract(g2, q0, x1, x2) + contract(g2, p0, q1, x2)
            total = total + contract(g2, p0, p1, q2)
            aliasing += metric[d, e] * float(total[0, 0, 0])
    (p0, _, q0), (p1, x1, q1), (_, x2, q2) = [_products(a, a) for a in ww]
    total = contract(g2, q0, x1, x2) + contract(g2, p0, q1, x2)
    potential_aliasing = float((total + contract(g2, p0, p1, q2))[0, 0, 0])

    # the principal alias of every mesh frequency in the box
    w0 = [np.sqrt(a[0]) for a in ww]  # |ŵ_0|
    grids = np.meshgrid(*geometry.axes, indexing="ij")
    k = sum(
        grids[d][..., None] * (2.0 * math.pi / geometry.ns[d]) * nb[d] for d in range(3)
    )
    k_sq = np.sum(k * k, axis=-1)
    exact = coulomb_kernel(k_sq, geometry.smearing)
    squares = [w**2 for w in w0]
    shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
    s = []
    for d in range(3):
        product = dw[d][0].reshape(shapes[d])
        for f in range(3):
            if f != d:
                product = product * squares[f].reshape(shapes[f])
        theta = thetas[d].reshape(shapes[d])
        # D̂_0 Ŵ_0^* has the imaginary part i·Im(ŵ'ŵ*) along each axis
        s.append(g_tilde * product - theta * exact)
    principal = 0.0
    for d in range(3):
        for e in range(3):
            principal += metric[d, e] * float(np.sum(s[d] * s[e]))
    big_w_sq = squares[0][:, None, None] * squares[1][None, :, None] * squares[2]
    potential_principal = float(np.sum((g_tilde * big_w_sq - exact) ** 2))

    # exact-kernel vectors that are not a principal frequency in the box
    outside = ~geometry.principal
    return (
        aliasing + principal,
        potential_aliasing + potential_principal,
        outside,
    )
