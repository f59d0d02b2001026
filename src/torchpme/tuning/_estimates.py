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

This module holds the real-space terms, their combination with the k-space terms
per atom and the torch front end (:class:`ErrorEstimate`); the k-space sums are
in :mod:`torchpme.tuning._kspace_errors`, built on the kernel and weight
transforms of :mod:`torchpme.tuning._fourier` and the cancellation-free pair
terms of :mod:`torchpme.tuning._alias`; the density of slabs and clusters is in
:mod:`torchpme.tuning._density`.

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
error is 1.8× the Kolafa–Perram value and the k-space pair terms (mean
squares) about 3× theirs. The pair terms (``E_pair``, the real-space "others")
are therefore multiplied by the density factor ``D ≥ 1`` of
:mod:`torchpme.tuning._density` (1 for bulk systems); the self terms (an atom
with itself through the mesh and with its own images, one per cell volume) keep
``V``.
"""

import math
from typing import Dict, List, Optional

import numpy as np
import torch

from .._core.validation import check_positive, message
from . import _density
from ._base import TuningErrorBounds
from ._kspace_errors import Terms, ewald_errors, mesh_errors

__all__ = [
    "ErrorEstimate",
    "Terms",
    "combine",
    "ewald_errors",
    "largest_error",
    "mesh_errors",
    "realspace_error",
    "realspace_potential_error",
]


# -- real space -------------------------------------------------------------------


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


# -- the total per atom -----------------------------------------------------------


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


def largest_error(components: Dict[str, float]) -> float:
    """The larger of the RMS errors of the forces and of the potentials, each
    ``√(real² + k-space²)``, from the four parts of
    :meth:`ErrorEstimate.components`."""
    force = math.hypot(components["force_real"], components["force_kspace"])
    potential = math.hypot(components["potential_real"], components["potential_kspace"])
    return max(force, potential)


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
        # the lattice-vector lengths exactly as the calculators compute them, so
        # that a spacing on a size edge gives the estimate the calculator's mesh
        self._lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
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
        error = largest_error(self.components(smearing, cutoff, key))
        return torch.tensor(self.safety * error, dtype=self._charges.dtype)
