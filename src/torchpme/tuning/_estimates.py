"""RMS force errors of Ewald, PME and P3M for uncorrelated charges (NumPy, float64).

These are the estimates the tuners select with. They follow the random-charge
argument of Kolafa & Perram (1992), doi:10.1080/08927029208049126, and the
error functional of Hockney & Eastwood / Deserno & Holm (1998),
doi:10.1063/1.477414, worked out for the pipelines as implemented here:
forces are the exact gradient of the computed energy (autograd), the mesh
weights are the piecewise polynomials of :mod:`torchpme._core.weights`
(Lagrange for PME, B-splines for P3M), the P3M filter is ``G/U²`` without
aliasing sums, and the Ewald k-set is the box of
:func:`torchpme._core.kspace.ewald_size`.

**Setting.** The exact long-range pair potential is
``Φ(r, r') = (1/V) Σ_K G(K) e^{iK·(r−r')}`` with ``G(K) = 4π e^{−σ²K²/2}/K²``
over the reciprocal lattice. A method replaces it by ``Φ̃``; the force on atom
``i`` is ``−q_i Σ_j q_j ∇₁Φ̃(r_i, r_j)``. For charges at independent uniformly
random positions the mean squared force error per atom is

.. math::

    ΔF² = \\frac{(Q_2)^2 − Q_4}{N} E_\\text{pair} + \\frac{Q_4}{N} E_\\text{self},
    \\qquad Q_2 = Σ q_i^2,\\; Q_4 = Σ q_i^4,

with ``E_pair = ⟨|∇₁(Φ̃ − Φ)|²⟩`` over both positions and ``E_self`` the mean
squared self-force ``|∇₁Φ̃(r, r)|²`` (zero for Ewald, not for meshes: an atom
feels its own charge through the mesh). The potentials ``V_i = ½ Σ_j q_j Φ̃``
follow the same way without the gradient:
``ΔV² = ¼ [Q_2(N−1)/N · E^V_pair + Q_2/N · E^V_self]``, with
``E^V_pair = ⟨|Φ̃ − Φ|²⟩`` and ``E^V_self = ⟨|Φ̃(r, r) − Φ(r, r)|²⟩`` (the error
of each atom's interaction with its own images, of one sign for all atoms).

**Ewald** (k-set ``𝒦``): ``E_pair = (1/V²) Σ_{K∉𝒦} w_K K² G(K)²``, with
``w_K = 1/2`` where ``−K ∈ 𝒦`` (an even FFT axis keeps ``−n/2`` but not
``+n/2``; ``cos(K·r)`` then stands for half of both) and 1 otherwise;
``E^V_pair`` likewise without ``K²``, ``√E^V_self = (1/V) Σ_{K∉𝒦} G(K)``.

**Mesh** (``n_d`` points along ``a_d``, separable weight ``w``, filter ``G̃`` on
the mesh frequencies ``θ_d = 2π m_d / n_d``). With ``ŵ(θ) = ∫ w(t) e^{−iθt} dt``,
``ŵ'`` the transform of the piecewise derivative ``w'`` (what autograd
differentiates), ``Ŵ = Π_d ŵ(θ_d)``, ``D̂ = Σ_d (n_d b_d / 2π) ŵ'(θ_d)
Π_{e≠d} ŵ(θ_e)``, and ``X_M`` the value at the alias ``θ + 2πM``:

.. math::

    V^2 E_\\text{pair} = Σ_θ \\Big[ G̃^2 Σ_M |D̂_M|^2 Σ_M |Ŵ_M|^2
        − 2 G̃ Σ_M G(k_M) \\,\\mathrm{Re}(−i\\, k_M·D̂_M Ŵ_M^*)
        + Σ_M k_M^2 G(k_M)^2 \\Big],

    V^2 E_\\text{self} = Σ_{P≠0} \\Big| Σ_θ G̃(θ) Σ_M D̂_M Ŵ_{M−P}^* \\Big|^2 ;

the potential terms replace ``D̂`` by ``Ŵ`` (and ``k_M`` by 1), and the self term
keeps ``P = 0`` minus ``Σ_K G(K)``.

The alias sums of ``|ŵ|²``, ``|ŵ'|²``, ``ŵ'ŵ*`` (and their shifted versions)
are finite cosine series by Poisson summation, with the correlations
``∫ f(s + j) g(s) e^{−2πiPs} ds`` of the weight polynomials as coefficients;
every other sum runs over the k-vectors where ``G`` or ``G̃`` is not negligible.
Checked against measured RMS force errors of the calculators (see
``tests/test_tuning_accuracy.py``): measured / estimated is 0.7–1.1 for random
ionic systems, lower for crystals.

**Inhomogeneous systems.** Uniformly random positions over the cell are
optimistic for a slab or a cluster in vacuum: each atom's partners are denser
than ``N/V``. On a slab of 64 ions in 8 Å of a 36 Å cell the real-space force
error was 1.8× the Kolafa–Perram value and the k-space pair terms (mean
squares) about 3× theirs. The pair terms (``E_pair``, the real-space "others")
are therefore multiplied by the density factor ``D ≥ 1`` of
:mod:`torchpme.tuning._density` (1 for bulk systems); the self terms (an atom
with itself through the mesh and with its own images, one per cell volume) keep
``V``.
"""

import functools
import math
from itertools import product
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from .._core.validation import check_positive, message
from .._core.weights import bspline_coefficients, lagrange_coefficients
from . import _density
from .tuner import TuningErrorBounds

__all__ = [
    "ErrorEstimate",
    "Terms",
    "combine",
    "ewald_errors",
    "mesh_errors",
    "realspace_error",
    "realspace_potential_error",
]

# exp(-_LOG_CUT) is the relative size of the kernel values that are dropped
_LOG_CUT = 20.0
# largest box of k-vectors evaluated per estimate; larger cells are replaced by a
# smaller cell with the same mesh spacings (the estimates are intensive)
_BOX_BUDGET = 60_000
# the smaller cell keeps at least this many smearings per lattice vector
_MIN_LENGTH_IN_SMEARINGS = 10.0
# self-force harmonics |P_d| <= _P_MAX
_P_MAX = 2

_HARMONICS = list(range(-_P_MAX, _P_MAX + 1))

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def _contract(grid: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """``Σ_ijk grid[i,j,k] x[h,i] y[h',j] z[h'',k]`` for a real ``grid`` and
    ``(H, n)`` factors, one axis at a time; returns ``(Hx, Hy, Hz)``."""
    z = np.atleast_2d(z)
    if np.iscomplexobj(z):
        out = grid @ z.real.T + 1j * (grid @ z.imag.T)  # (I, J, Hz)
    else:
        out = grid @ z.T
    out = np.einsum("ijc,bj->ibc", out, np.atleast_2d(y))
    return np.einsum("ibc,ai->abc", out, np.atleast_2d(x))


class _Weight:
    """The 1-D weight ``w(t)`` of a node at distance ``t`` (mesh units) from an atom.

    Built from the per-node polynomials ``w_j(x)`` of :mod:`torchpme._core.weights`
    (``x`` the offset from the reference point, ``|x| ≤ 1/2``, node ``j`` at offset
    ``o_j = j − (n−1)/2``): ``w(t) = w_j(t + o_j)`` on ``[−o_j − 1/2, −o_j + 1/2]``,
    i.e. piece ``k = n − 1 − j`` of the unit intervals starting at ``−n/2``.
    """

    def __init__(self, method: str, n: int):
        if method == "Lagrange":
            table = lagrange_coefficients(n)
        else:
            table = bspline_coefficients(n)
        self.n = n
        values, derivatives = [], []
        for k in range(n):
            j = n - 1 - k
            offset = (2 * j - (n - 1)) / 2.0
            poly = np.polynomial.Polynomial([float(c) for c in table[j]])
            shifted = poly(np.polynomial.Polynomial([offset, 1.0]))
            values.append(np.pad(shifted.coef, (0, n - len(shifted.coef))))
            deriv = shifted.deriv().coef if n > 1 else np.zeros(1)
            derivatives.append(np.pad(deriv, (0, n - len(deriv))))
        # (n pieces, n powers), lowest power first
        self._coefficients = (np.array(values), np.array(derivatives))
        # Gauss–Legendre nodes on every piece: exact for these polynomial products
        starts = -n / 2.0 + np.arange(n)
        self._t = (starts[:, None] + 0.5 + 0.5 * _GL_NODES).reshape(-1)
        self._dt = np.tile(0.5 * _GL_WEIGHTS, n)
        self._lags = np.arange(-n, n + 1)
        w_t = self._value(self._t, False)
        shifted_t = self._t[None, :] + self._lags[:, None]
        f_w = self._value(shifted_t, False) * self._dt
        f_dw = self._value(shifted_t, True) * self._dt
        self._shifted = {}
        for p in _HARMONICS:
            g = w_t * np.exp(-2j * math.pi * p * self._t)
            self._shifted[(p, False)] = f_w @ g
            self._shifted[(p, True)] = f_dw @ g
        self._bb = f_dw @ self._value(self._t, True)
        self._w_t = w_t * self._dt
        self._dw_t = self._value(self._t, True) * self._dt

    def _value(self, t: np.ndarray, derivative: bool) -> np.ndarray:
        """``w(t)`` or ``w'(t)`` (piecewise derivative), zero outside the support."""
        n = self.n
        piece = np.floor(t + n / 2.0).astype(np.int64)
        inside = (piece >= 0) & (piece < n)
        coefficients = self._coefficients[1 if derivative else 0][
            np.clip(piece, 0, n - 1)
        ]
        out = np.zeros_like(t)
        for power in range(n - 1, -1, -1):
            out = out * t + coefficients[..., power]
        return np.where(inside, out, 0.0)

    def transform(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``ŵ(θ)`` and ``ŵ'(θ)`` (transforms of ``w`` and of its piecewise derivative)."""
        phase = np.exp(-1j * np.multiply.outer(np.asarray(theta, dtype=float), self._t))
        return phase @ self._w_t, phase @ self._dw_t

    def alias_sums(self, theta: np.ndarray, harmonic: int = 0):
        """Alias sums at ``θ``: ``Σ_M ŵ_M ŵ_{M−P}^*``, ``Σ_M ŵ'_M ŵ_{M−P}^*`` and,
        for ``P = 0``, ``Σ_M |ŵ'_M|²`` (``P`` = ``harmonic``).

        By Poisson summation these are ``Σ_j c_j e^{−iθj}`` with the correlations
        ``c_j = ∫ f(s + j) w(s) e^{−2πiPs} ds`` (``f = w`` or ``w'``) as coefficients.
        """
        phases = np.exp(-1j * np.outer(theta, self._lags))
        ww = phases @ self._shifted[(harmonic, False)]
        dw = phases @ self._shifted[(harmonic, True)]
        dd = (phases @ self._bb).real if harmonic == 0 else None
        return ww, dw, dd


@functools.cache
def _weight(method: str, n: int) -> _Weight:
    return _Weight(method, n)


# -- the Coulomb kernel ----------------------------------------------------------


def _kernel(k_sq: np.ndarray, smearing: float) -> np.ndarray:
    safe = np.where(k_sq > 0, k_sq, 1.0)
    return np.where(
        k_sq > 0, 4.0 * math.pi * np.exp(-0.5 * smearing**2 * safe) / safe, 0.0
    )


def _reciprocal(cell: np.ndarray) -> np.ndarray:
    return 2.0 * math.pi * np.linalg.inv(cell).T


def _box(reach: List[int]) -> np.ndarray:
    """All integer triplets with ``|m_d| <= reach_d``, ``(M, 3)``."""
    axes = [np.arange(-r, r + 1) for r in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


# -- real space and Ewald --------------------------------------------------------


class Terms(NamedTuple):
    """Error terms per unit charges: ``√E_pair`` and ``√E_self`` of the forces and
    of the potentials ``φ`` (``V = φ/2``)."""

    force_pair: float
    force_self: float
    potential_pair: float
    potential_self: float


def realspace_potential_error(
    sum_squared: float,
    n_atoms: int,
    volume: float,
    smearing: float,
    cutoff: float,
    occupied_volume: Optional[float] = None,
) -> float:
    """RMS real-space error of the potentials ``V_i``, random-charge estimate.

    Pairs beyond the cutoff, at uniform density: ``⟨ΔV²⟩ = ¼ [Q²(N−1)/N · I₂/V' +
    Q²/N · (I₁/V)²]`` with ``I₂ = ∫_{r_c}^∞ 4π erfc²(r/√2σ) dr`` (other atoms,
    random signs, at the density ``N/V'`` seen beyond the cutoff) and
    ``I₁ = ∫_{r_c}^∞ 4π r erfc(r/√2σ) dr`` (the atom's own images, one per cell
    volume ``V``, all of one sign). ``V' = occupied_volume``, by default ``V``
    (:mod:`torchpme.tuning._density` for slabs and clusters).
    """
    if occupied_volume is None:
        occupied_volume = volume
    a = math.sqrt(2.0) * smearing
    u0 = cutoff / a
    # ∫_{u0}^∞ u erfc(u) du in closed form
    i1 = (
        4.0
        * math.pi
        * a**2
        * (
            u0 / (2.0 * math.sqrt(math.pi)) * math.exp(-(u0**2))
            + (0.25 - 0.5 * u0**2) * math.erfc(u0)
        )
    )
    u = u0 + np.linspace(0.0, 8.0, 801)
    erfc_sq = np.array([math.erfc(x) for x in u]) ** 2
    # the trapezoidal rule on the uniform grid (np.trapezoid needs NumPy >= 2)
    integral = (u[1] - u[0]) * (erfc_sq.sum() - 0.5 * (erfc_sq[0] + erfc_sq[-1]))
    i2 = 4.0 * math.pi * a * float(integral)
    others = sum_squared * (n_atoms - 1) / n_atoms * max(i2, 0.0) / occupied_volume
    images = sum_squared / n_atoms * (max(i1, 0.0) / volume) ** 2
    return 0.5 * math.sqrt(others + images)


def realspace_error(
    sum_squared: float, n_atoms: int, volume: float, smearing: float, cutoff: float
) -> float:
    """Kolafa–Perram RMS real-space force error ``2Q²/√(N r_c V) e^{−r_c²/2σ²}``
    (pairs beyond the cutoff at the density ``N/V``; for slabs and clusters pass
    the occupied volume, :mod:`torchpme.tuning._density`)."""
    prefactor = 2.0 * sum_squared / math.sqrt(n_atoms)
    return (
        prefactor
        / math.sqrt(cutoff * volume)
        * math.exp(-(cutoff**2) / (2.0 * smearing**2))
    )


def ewald_errors(cell: np.ndarray, smearing: float, ns: List[int]) -> "Terms":
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
    k_lim = math.sqrt(2.0 * _LOG_CUT) / smearing
    lengths = np.linalg.norm(cell, axis=1)
    reach = [math.ceil(k_lim * length / (2.0 * math.pi)) for length in lengths]
    # frequencies of an FFT axis of length n: -(n // 2) ... (n - 1) // 2
    if all(r <= (n - 1) // 2 for r, n in zip(reach, ns)):
        return Terms(0.0, 0.0, 0.0, 0.0)
    m = _box(reach)
    outside, mirror_outside = _outside(m, ns), _outside(-m, ns)
    k = m[outside] @ _reciprocal(cell)
    k_sq = np.sum(k * k, axis=1)
    kernel = _kernel(k_sq, smearing)
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
    radius = math.sqrt(2.0 * _LOG_CUT) / smearing
    if not p3m or radius >= radius_bz:
        return min(radius, radius_bz)
    r = np.linspace(0.0, radius_bz, 2001)[1:]
    kappa = np.minimum(np.outer(r, spacings), math.pi)
    log_bound = -0.5 * (smearing * r) ** 2 - 2 * n * np.sum(
        np.log(np.sinc(kappa / (2.0 * math.pi))), axis=1
    )
    large = np.nonzero(log_bound > -_LOG_CUT)[0]
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
        reach = np.ceil(math.sqrt(2.0 * _LOG_CUT) / smearing * lengths / (2 * math.pi))
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
        b = _reciprocal(cell)
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
        self.kernel = np.where(k_sq < reach**2, _kernel(k_sq, smearing), 0.0)
        # every reciprocal-lattice vector within k_lim, with its zone representative
        k_lim = math.sqrt(2.0 * _LOG_CUT) / smearing
        self.reach = [math.ceil(k_lim * lengths[d] / (2 * math.pi)) for d in range(3)]
        m = _box(self.reach)
        k = m @ b
        k_sq = np.sum(k * k, axis=1)
        keep = (k_sq < k_lim**2) & (k_sq > 0)
        self.m, k_sq = m[keep], k_sq[keep]
        self.k_dot_nb = [k[keep] @ self.nb[d] for d in range(3)]
        self.exact_kernel = _kernel(k_sq, smearing)
        self.exact = float(np.sum(k_sq * self.exact_kernel**2))
        self.exact_potential = float(np.sum(self.exact_kernel**2))
        self.kernel_sum = float(np.sum(self.exact_kernel))
        reduced = [(self.m[:, d] - low[d]) % ns[d] + low[d] for d in range(3)]
        inside = np.ones(len(self.m), dtype=bool)
        for d in range(3):
            inside &= (reduced[d] >= self.axes[d][0]) & (reduced[d] <= self.axes[d][-1])
        self.inside = inside
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
    weight = _weight(method, n)
    p3m = method == "P3M"
    b = _reciprocal(cell)
    spacings = np.linalg.norm(cell, axis=1) / np.array(ns)
    radius_bz = float(np.sum(np.array(ns) / 2.0 * np.linalg.norm(b, axis=1)))
    reach = _filter_reach(smearing, spacings, n, p3m, radius_bz)
    geometry = _geometry(tuple(cell.reshape(-1)), smearing, tuple(ns), reach)
    volume, nb, thetas = geometry.volume, geometry.nb, geometry.thetas
    g_tilde = geometry.kernel
    if p3m:
        u = [np.sinc(t / (2.0 * math.pi)) ** (2 * n) for t in thetas]
        g_tilde = g_tilde / (u[0][:, None, None] * u[1][None, :, None] * u[2])

    # separable alias sums along each axis; Σ ŵ'ŵ* is imaginary (w' is odd), so
    # the products of two of them in |D̂|² are real: C_d C_e^* = c_d c_e
    ww, dw, dd = zip(*(weight.alias_sums(t) for t in thetas))
    ww = [x.real for x in ww]
    dw = [x.imag for x in dw]
    metric = nb @ nb.T
    g2 = g_tilde**2
    separable = 0.0
    for d in range(3):
        for e in range(3):
            factors = []
            for f in range(3):
                if d == e == f:
                    factors.append(dd[f] * ww[f])
                elif f in (d, e) and d != e:
                    factors.append(dw[f] * ww[f])
                else:
                    factors.append(ww[f] * ww[f])
            separable += metric[d, e] * float(_contract(g2, *factors)[0, 0, 0])

    # cross term with the exact kernel, over the reciprocal-lattice vectors
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
    cross = float(
        np.sum(g_at * geometry.exact_kernel * (-1j * k_dot_d * np.conj(big_w)).real)
    )
    pair = max(separable - 2.0 * cross + geometry.exact, 0.0) / volume**2

    # potentials: the same with Ŵ in place of D̂
    a_sq = [x * x for x in ww]
    potential_cross = float(np.sum(g_at * geometry.exact_kernel * np.abs(big_w) ** 2))
    potential_pair = (
        float(_contract(g2, *a_sq)[0, 0, 0])
        - 2.0 * potential_cross
        + geometry.exact_potential
    )
    potential_pair = max(potential_pair, 0.0) / volume**2

    # self terms: harmonics P of the mesh-periodic interaction of an atom with
    # itself (P = 0 of the potential: the mean error of the self-image sum)
    plain, derived = [], []
    for d in range(3):
        tables = [weight.alias_sums(thetas[d], p) for p in _HARMONICS]
        plain.append(np.stack([t[0] for t in tables]))
        derived.append(np.stack([t[1] for t in tables]))
    vector = 0.0
    for d in range(3):
        factors = [derived[f] if f == d else plain[f] for f in range(3)]
        vector = vector + _contract(g_tilde, *factors)[..., None] * nb[d]
    centre = len(_HARMONICS) // 2
    vector[centre, centre, centre] = 0.0
    self_term = float(np.sum(np.abs(vector) ** 2)) / volume**2
    harmonics = _contract(g_tilde, *plain)
    harmonics[centre, centre, centre] -= geometry.kernel_sum
    potential_self = float(np.sum(np.abs(harmonics) ** 2)) / volume**2
    shrink = volume / volume_true
    return Terms(
        force_pair=math.sqrt(pair * shrink),
        force_self=math.sqrt(self_term),
        potential_pair=math.sqrt(potential_pair * shrink),
        potential_self=math.sqrt(potential_self),
    )


def combine(
    terms: Terms,
    sum_squared: float,
    sum_fourth: float,
    n: int,
    density_factor: float = 1.0,
):
    """RMS errors per atom ``(ΔF, ΔV)`` of the forces and of the potentials ``V_i``.

    ``ΔF² = D ((Q²)² − Q⁴)/N · E_pair + Q⁴/N · E_self`` and
    ``ΔV² = ¼ [D Q²(N−1)/N · E_pair^V + Q²/N · E_self^V]``, where ``D =
    density_factor`` (≥ 1) is the density of partners over ``N/V``
    (:mod:`torchpme.tuning._density`): the pair terms average the pair error over
    the partners, the self terms involve one atom only.
    """
    pair_weight = density_factor * max(sum_squared**2 - sum_fourth, 0.0) / n
    force = math.sqrt(
        pair_weight * terms.force_pair**2 + sum_fourth / n * terms.force_self**2
    )
    potential = 0.5 * math.sqrt(
        density_factor * sum_squared * (n - 1) / n * terms.potential_pair**2
        + sum_squared / n * terms.potential_self**2
    )
    return force, potential


# -- torch front end --------------------------------------------------------------


class ErrorEstimate(TuningErrorBounds):
    """Base of the estimate modules: the RMS error of the full calculation.

    The larger of the RMS errors of the forces and of the per-atom potentials
    (each ``√(real² + k-space²)``: the Kolafa–Perram real-space term and the
    k-space terms of this module), times ``safety``. The potentials rarely
    decide, but they do for very few atoms, whose forces may vanish by symmetry.
    For a slab or a cluster in vacuum the pair terms use the density of the
    occupied region (:mod:`torchpme.tuning._density`: real space with the reach
    ``r_c``, k-space with ``2σ``); the self terms keep the cell volume.
    Subclasses implement :meth:`_kspace_terms` and :meth:`error` with the
    positional order of their compatible error-bound class.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
        safety: factor applied to the estimate (1: the plain prediction).
    """

    def __init__(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        safety: float = 1.0,
    ):
        super().__init__(charges, cell, positions)
        if not (safety > 0.0 and math.isfinite(safety)):
            raise ValueError(message("safety", "a finite number > 0", f"{safety}"))
        self.safety = float(safety)
        squares = charges.detach().to(torch.float64) ** 2
        self._sum_squared = float(squares.sum())
        self._sum_fourth = float((squares**2).sum())
        self._n_atoms = int(positions.shape[0])
        self._cell_array = cell.detach().to("cpu", torch.float64).numpy().copy()
        self._volume = abs(float(np.linalg.det(self._cell_array)))
        self._lengths = [float(x) for x in np.linalg.norm(self._cell_array, axis=1)]
        self._layers = _density.layer_thicknesses(
            self._cell_array, positions.detach().to("cpu", torch.float64).numpy()
        )
        self._memo: Dict[tuple, Terms] = {}

    def _kspace_terms(self, smearing: float, key: tuple) -> Terms:
        raise NotImplementedError

    def components(self, smearing, cutoff, key: tuple) -> Dict[str, float]:
        """The four RMS errors (no safety factor): real-space and k-space parts
        of the forces and of the potentials."""
        smearing = float(smearing)
        cutoff = float(cutoff)
        check_positive("smearing", smearing)
        check_positive("cutoff", cutoff)
        memo_key = (smearing, *key)
        if memo_key not in self._memo:
            self._memo[memo_key] = self._kspace_terms(smearing, key)
        # partners are denser than N/V in a slab or a cluster: the pair terms see
        # D(R) N/V, with R the reach of each error (_density); self terms do not
        kspace_density = _density.density_factor(
            *self._layers, _density.KSPACE_REACH * smearing
        )
        force, potential = combine(
            self._memo[memo_key],
            self._sum_squared,
            self._sum_fourth,
            self._n_atoms,
            kspace_density,
        )
        occupied = self._volume / _density.density_factor(*self._layers, cutoff)
        arguments = (self._sum_squared, self._n_atoms, occupied, smearing, cutoff)
        return {
            "force_real": realspace_error(*arguments),
            "force_kspace": force,
            "potential_real": realspace_potential_error(
                self._sum_squared,
                self._n_atoms,
                self._volume,
                smearing,
                cutoff,
                occupied_volume=occupied,
            ),
            "potential_kspace": potential,
        }

    def _total(self, smearing, cutoff, key: tuple) -> torch.Tensor:
        c = self.components(smearing, cutoff, key)
        force = math.hypot(c["force_real"], c["force_kspace"])
        potential = math.hypot(c["potential_real"], c["potential_kspace"])
        return torch.tensor(
            self.safety * max(force, potential), dtype=self._charges.dtype
        )
