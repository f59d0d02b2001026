"""The k-space error terms of Ewald and of the mesh methods, per unit charges.

:func:`ewald_errors` and :func:`mesh_errors` evaluate the sums over k-vectors of
the random-charge estimates derived in :mod:`torchpme.tuning._estimates`; the
mesh pair terms are regrouped without cancellation in
:mod:`torchpme.tuning._alias`.
"""

import functools
import math
from itertools import product
from typing import List, NamedTuple

import numpy as np

from ._alias import pair_terms
from ._fourier import (
    HARMONICS,
    LOG_CUT,
    contract,
    coulomb_kernel,
    lattice_box,
    mesh_weight,
    reciprocal,
)

__all__ = ["Terms", "ewald_errors", "mesh_errors"]

# largest box of k-vectors evaluated per estimate; larger cells are replaced by a
# smaller cell with the same mesh spacings (the estimates are intensive)
_BOX_BUDGET = 60_000
# the smaller cell keeps at least this many smearings per lattice vector
_MIN_LENGTH_IN_SMEARINGS = 10.0


class Terms(NamedTuple):
    """Error terms per unit charges: ``√E_pair`` and ``√E_self`` of the forces and
    of the potentials ``φ`` (``V = φ/2``)."""

    force_pair: float
    force_self: float
    potential_pair: float
    potential_self: float


def ewald_errors(cell: np.ndarray, smearing: float, ns: List[int]) -> Terms:
    """Force and potential error terms of the Ewald k-set: the box of FFT
    frequencies of size ``ns`` (no self-force; the self-image potential misses
    ``(1/V) Σ_{K∉𝒦} G(K)``).

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        smearing: Gaussian smearing ``σ``.
        ns: the k-grid size per axis (:func:`torchpme._core.kspace.ewald_size`).
    """
    volume_true = abs(np.linalg.det(cell))
    cell, ns = _shrink(np.asarray(cell, dtype=float), ns, smearing)
    volume = abs(np.linalg.det(cell))
    k_lim = math.sqrt(2.0 * LOG_CUT) / smearing
    lengths = np.linalg.norm(cell, axis=1)
    reach = [math.ceil(k_lim * length / (2.0 * math.pi)) for length in lengths]
    # frequencies of an FFT axis of length n: -(n // 2) ... (n - 1) // 2
    if all(r <= (n - 1) // 2 for r, n in zip(reach, ns)):
        return Terms(0.0, 0.0, 0.0, 0.0)
    m = lattice_box(reach)
    outside, mirror_outside = _outside(m, ns), _outside(-m, ns)
    k = m[outside] @ reciprocal(cell)
    k_sq = np.sum(k * k, axis=1)
    kernel = coulomb_kernel(k_sq, smearing)
    # the calculator keeps cos(k·r) for k = -n/2 without its partner +n/2: the pair
    # (k, -k) then carries half the weight of a missing pair
    weight = np.where(mirror_outside[outside], 1.0, 0.5)
    scale = 1.0 / (volume * volume_true)
    return Terms(
        force_pair=math.sqrt(float(np.sum(weight * k_sq * kernel**2)) * scale),
        force_self=0.0,
        potential_pair=math.sqrt(float(np.sum(weight * kernel**2)) * scale),
        potential_self=float(np.sum(kernel)) / volume,
    )


def _outside(m: np.ndarray, ns: List[int]) -> np.ndarray:
    """Whether the frequencies ``m`` fall outside the FFT layout of size ``ns``."""
    outside = np.zeros(len(m), dtype=bool)
    for d in range(3):
        outside |= (m[:, d] < -(ns[d] // 2)) | (m[:, d] > (ns[d] - 1) // 2)
    return outside


# -- meshes ---------------------------------------------------------------------


def _filter_reach(
    smearing: float, spacings: np.ndarray, n: int, p3m: bool, radius_bz: float
) -> float:
    """Radius beyond which the mesh filter is negligible (up to the zone radius).

    PME's filter is ``G``; P3M's is ``G/U²`` with ``U² ≥ Π_d sinc(min(|k|h_d, π)/2π)^{2n}``.
    """
    radius = math.sqrt(2.0 * LOG_CUT) / smearing
    if not p3m or radius >= radius_bz:
        return min(radius, radius_bz)
    r = np.linspace(0.0, radius_bz, 2001)[1:]
    kappa = np.minimum(np.outer(r, spacings), math.pi)
    log_bound = -0.5 * (smearing * r) ** 2 - 2 * n * np.sum(
        np.log(np.sinc(kappa / (2.0 * math.pi))), axis=1
    )
    large = np.nonzero(log_bound > -LOG_CUT)[0]
    if len(large) == 0:
        return radius
    return float(min(radius_bz, r[large[-1]] + r[0]))


def _shrink(cell: np.ndarray, ns: List[int], smearing: float):
    """Divide the longest lattice vector (and its mesh) by a factor 2, 3 or 5 of
    its mesh size while the k-box is too big (2 first: power-of-two meshes are
    halved as always; 3 and 5 let odd 5-smooth meshes shrink too)."""
    cell = cell.copy()
    ns = list(ns)
    while True:
        lengths = np.linalg.norm(cell, axis=1)
        reach = np.ceil(math.sqrt(2.0 * LOG_CUT) / smearing * lengths / (2 * math.pi))
        if np.prod(2 * reach + 1) <= _BOX_BUDGET:
            return cell, ns
        order = np.argsort(-lengths)
        for d, factor in product(order, (2, 3, 5)):
            if (
                ns[d] % factor == 0
                and lengths[d] / factor >= _MIN_LENGTH_IN_SMEARINGS * smearing
            ):
                cell[d] = cell[d] / factor
                ns[d] = ns[d] // factor
                break
        else:
            return cell, ns


class _Geometry:
    """What the mesh estimates share for one (cell, smearing, mesh, filter reach):
    the zone of mesh frequencies with the kernel on it, and the reciprocal-lattice
    vectors where the exact kernel is not negligible."""

    def __init__(self, cell: np.ndarray, smearing: float, ns: List[int], reach: float):
        self.volume = abs(np.linalg.det(cell))
        b = reciprocal(cell)
        lengths = np.linalg.norm(cell, axis=1)
        self.nb = np.array([ns[d] * b[d] / (2.0 * math.pi) for d in range(3)])
        # zone of mesh frequencies: -(n_d // 2) ... (n_d - 1) // 2, within `reach`
        low = [-(size // 2) for size in ns]
        high = [(size - 1) // 2 for size in ns]
        zone = [
            min(math.ceil(reach * lengths[d] / (2 * math.pi)), max(-low[d], high[d]))
            for d in range(3)
        ]
        self.axes = [
            np.arange(max(low[d], -zone[d]), min(high[d], zone[d]) + 1)
            for d in range(3)
        ]
        self.thetas = [2.0 * math.pi * self.axes[d] / ns[d] for d in range(3)]
        grid = np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)
        k_sq = np.sum((grid @ b) ** 2, axis=-1)
        self.kernel = np.where(k_sq < reach**2, coulomb_kernel(k_sq, smearing), 0.0)
        # every reciprocal-lattice vector within k_lim, with its zone representative
        k_lim = math.sqrt(2.0 * LOG_CUT) / smearing
        self.reach = [math.ceil(k_lim * lengths[d] / (2 * math.pi)) for d in range(3)]
        m = lattice_box(self.reach)
        k = m @ b
        k_sq = np.sum(k * k, axis=1)
        keep = (k_sq < k_lim**2) & (k_sq > 0)
        self.m, k_sq = m[keep], k_sq[keep]
        self.k_sq = k_sq
        self.smearing = smearing
        self.k_dot_nb = [k[keep] @ self.nb[d] for d in range(3)]
        self.exact_kernel = coulomb_kernel(k_sq, smearing)
        self.kernel_sum = float(np.sum(self.exact_kernel))
        reduced = [(self.m[:, d] - low[d]) % ns[d] + low[d] for d in range(3)]
        inside = np.ones(len(self.m), dtype=bool)
        for d in range(3):
            inside &= (reduced[d] >= self.axes[d][0]) & (reduced[d] <= self.axes[d][-1])
        self.inside = inside
        # vectors that are the principal (M = 0) frequency of a point of the zone
        principal = inside.copy()
        for d in range(3):
            principal &= reduced[d] == self.m[:, d]
        self.principal = principal
        self.zone_index = tuple(reduced[d][inside] - self.axes[d][0] for d in range(3))
        self.ns = ns


@functools.lru_cache(maxsize=32)
def _geometry(cell: tuple, smearing: float, ns: tuple, reach: float) -> _Geometry:
    return _Geometry(np.array(cell).reshape(3, 3), smearing, list(ns), reach)


def mesh_errors(
    cell: np.ndarray, smearing: float, ns: List[int], method: str, n: int
) -> Terms:
    """Force and potential error terms of PME (``method="Lagrange"``) or P3M
    (``"P3M"``).

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        smearing: Gaussian smearing ``σ``.
        ns: mesh points along each lattice vector.
        method: ``"Lagrange"`` (PME, filter ``G``) or ``"P3M"`` (B-splines,
            filter ``G/U²`` with ``U`` taken along the lattice vectors).
        n: interpolation nodes (order) per axis.
    """
    volume_true = abs(np.linalg.det(cell))
    cell, ns = _shrink(np.asarray(cell, dtype=float), ns, smearing)
    weight = mesh_weight(method, n)
    p3m = method == "P3M"
    b = reciprocal(cell)
    spacings = np.linalg.norm(cell, axis=1) / np.array(ns)
    radius_bz = float(np.sum(np.array(ns) / 2.0 * np.linalg.norm(b, axis=1)))
    reach = _filter_reach(smearing, spacings, n, p3m, radius_bz)
    geometry = _geometry(tuple(cell.reshape(-1)), smearing, tuple(ns), reach)
    volume, nb, thetas = geometry.volume, geometry.nb, geometry.thetas
    g_tilde = geometry.kernel
    if p3m:
        u = [np.sinc(t / (2.0 * math.pi)) ** (2 * n) for t in thetas]
        g_tilde = g_tilde / (u[0][:, None, None] * u[1][None, :, None] * u[2])

    # cross terms with the exact kernel, over the reciprocal-lattice vectors
    m, reach_k = geometry.m, geometry.reach
    transforms = [
        weight.transform(2.0 * math.pi * np.arange(-reach_k[d], reach_k[d] + 1) / ns[d])
        for d in range(3)
    ]
    w_at = [transforms[d][0][m[:, d] + reach_k[d]] for d in range(3)]
    dw_at = [transforms[d][1][m[:, d] + reach_k[d]] for d in range(3)]
    k_dot_d = 0.0
    for d in range(3):
        others = w_at[(d + 1) % 3] * w_at[(d + 2) % 3]
        k_dot_d = k_dot_d + geometry.k_dot_nb[d] * dw_at[d] * others
    big_w = w_at[0] * w_at[1] * w_at[2]
    g_at = np.zeros(len(m))
    g_at[geometry.inside] = g_tilde[geometry.zone_index]
    kernel = geometry.exact_kernel
    cross = g_at * kernel * (-1j * k_dot_d * np.conj(big_w)).real
    potential_cross = g_at * kernel * np.abs(big_w) ** 2
    # the principal frequencies of the zone and the aliasing, without
    # cancellation (_alias); the other vectors as the plain sum of squares
    force, potential, rest = pair_terms(weight, geometry, g_tilde)
    force += float(np.sum((geometry.k_sq * kernel**2 - 2.0 * cross)[rest]))
    potential += float(np.sum((kernel**2 - 2.0 * potential_cross)[rest]))
    pair = max(force, 0.0) / volume**2
    potential_pair = max(potential, 0.0) / volume**2

    # self terms: harmonics P of the mesh-periodic interaction of an atom with
    # itself (P = 0 of the potential: the mean error of the self-image sum)
    plain, derived = [], []
    for d in range(3):
        tables = [weight.alias_sums(thetas[d], p) for p in HARMONICS]
        plain.append(np.stack([t[0] for t in tables]))
        derived.append(np.stack([t[1] for t in tables]))
    vector = 0.0
    for d in range(3):
        factors = [derived[f] if f == d else plain[f] for f in range(3)]
        vector = vector + contract(g_tilde, *factors)[..., None] * nb[d]
    centre = len(HARMONICS) // 2
    vector[centre, centre, centre] = 0.0
    self_term = float(np.sum(np.abs(vector) ** 2)) / volume**2
    harmonics = contract(g_tilde, *plain)
    harmonics[centre, centre, centre] -= geometry.kernel_sum
    potential_self = float(np.sum(np.abs(harmonics) ** 2)) / volume**2
    shrink = volume / volume_true
    return Terms(
        force_pair=math.sqrt(pair * shrink),
        force_self=math.sqrt(self_term),
        potential_pair=math.sqrt(potential_pair * shrink),
        potential_self=math.sqrt(potential_self),
    )
