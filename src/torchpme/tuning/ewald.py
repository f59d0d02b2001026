"""Tuning of :class:`~torchpme.EwaldCalculator`: error bounds and ``tune_ewald``."""

import math
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .._core.kspace import ewald_size
from ..calculators import EwaldCalculator
from ._bounds import RealSpaceBounds
from ._estimates import ErrorEstimate
from ._kspace_errors import Terms, ewald_errors
from ._search import TuningGrid, grid_search

__all__ = ["EwaldErrorBounds", "EwaldErrorEstimate", "tune_ewald"]


class EwaldErrorBounds(RealSpaceBounds):
    """torch-pme 0.5's error bound of Ewald summation (compatible numbers).

    .. math::

        ΔF_\\text{real} = \\frac{2Q^2}{\\sqrt{N r_c V}} e^{−r_c^2/2σ^2},\\qquad
        ΔF_k = \\frac{\\sqrt{2Q^2/\\sqrt{N}}}{π σ \\sqrt{V/λ}} e^{−2π^2σ^2/λ^2},

    combined as ``√(ΔF_real² + ΔF_k²)``, with ``Q² = Σ q²``. The k-space term
    assumes k-vectors up to ``2π/λ``; :class:`~torchpme.EwaldCalculator` keeps
    them up to about ``π/λ``, so the bound is far too optimistic (measured
    errors exceed it by orders of magnitude). :func:`tune_ewald` selects with
    :class:`EwaldErrorEstimate` instead.

    Reference: Kolafa & Perram, Mol. Simul. 9, 351 (1992),
    doi:10.1080/08927029208049126.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.

    Example:
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0, 0], [0.4, 0.4, 0.4]], dtype=torch.float64)
        >>> bounds = EwaldErrorBounds(charges, torch.eye(3, dtype=torch.float64), positions)
        >>> round(float(bounds(1.0, 0.5, 4.4)), 9)
        8.4304e-05
    """

    def __init__(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ):
        super().__init__(charges, cell, positions)
        self.register_buffer("cell", cell)
        self.register_buffer("positions", positions)

    def err_kspace(
        self, smearing: torch.Tensor, lr_wavelength: torch.Tensor
    ) -> torch.Tensor:
        """The reciprocal-space term ``ΔF_k``."""
        return (
            self.prefac**0.5
            / smearing
            / math.pi
            / torch.sqrt(self.volume / lr_wavelength)
            * torch.exp(-2.0 * (math.pi * smearing / lr_wavelength) ** 2)
        )

    def forward(self, smearing: float, lr_wavelength: float, cutoff: float):
        """Same as :meth:`error` (this positional order)."""
        return self.error(smearing, lr_wavelength, cutoff)

    def error(
        self, smearing: float, lr_wavelength: float, cutoff: float
    ) -> torch.Tensor:
        """``√(ΔF_k² + ΔF_real²)``, a 0-dim tensor in the dtype of the charges.

        Args:
            smearing: Gaussian smearing ``σ``.
            lr_wavelength: ``λ`` of :class:`~torchpme.EwaldCalculator`.
            cutoff: real-space cutoff ``r_c``.
        """
        return self._total(smearing, cutoff, lr_wavelength)


class EwaldErrorEstimate(ErrorEstimate):
    """RMS error of :class:`~torchpme.EwaldCalculator`, as the tuner uses it.

    For charges at uncorrelated positions, with ``𝒦`` the box of k-vectors the
    calculator keeps (``⌈‖a_d‖/λ⌉`` FFT frequencies per axis) and
    ``G(k) = 4π e^{−σ²k²/2}/k²``:

    .. math::

        ΔF_k^2 = \\frac{(Q^2)^2 − Σq^4}{N} \\frac{1}{V^2}
                 Σ_{k∉𝒦, k≠0} w_k k^2 G(k)^2,

    the discrete form of Kolafa & Perram's estimate (``w_k = 1/2`` where ``−k``
    is kept: a kept ``cos(k·r)`` term stands for half of ``±k``, 1 otherwise);
    the real-space term is
    theirs (:class:`EwaldErrorBounds`). The potentials ``V_i`` get the analogous
    estimate (plus the coherent error of each atom's own images). Returns
    ``safety · max(√(ΔF_real² + ΔF_k²), √(ΔV_real² + ΔV_k²))``. See
    :mod:`torchpme.tuning._estimates`.

    Reference: Kolafa & Perram, Mol. Simul. 9, 351 (1992),
    doi:10.1080/08927029208049126.

    Args:
        charges, cell, positions: the system.
        safety: factor applied to the estimate.
    """

    def _kspace_terms(self, smearing: float, key: tuple) -> Terms:
        return ewald_errors(self._cell_array, smearing, list(key))

    def kspace_key(self, lr_wavelength: float) -> tuple:
        """The k-grid ``(n_0, n_1, n_2)`` the calculator keeps for
        ``lr_wavelength`` (:func:`torchpme._core.kspace.ewald_size`)."""
        return tuple(ewald_size(self._lengths, float(lr_wavelength)))

    def error(
        self, smearing: float, lr_wavelength: float, cutoff: float
    ) -> torch.Tensor:
        """The estimated RMS error (times ``safety``), a 0-dim tensor.

        Args:
            smearing: Gaussian smearing ``σ``.
            lr_wavelength: ``λ`` of :class:`~torchpme.EwaldCalculator`.
            cutoff: real-space cutoff ``r_c``.
        """
        return self._total(smearing, cutoff, self.kspace_key(lr_wavelength))


def _wavelength_candidates(
    lengths: List[float], n_atoms: int, ns_lo: int, ns_hi: int
) -> Tuple[List[Dict[str, Any]], Callable, Callable]:
    """``{"lr_wavelength": L_min/n}`` for ``n = ns_lo … ns_hi``; the resource and
    the cost model of a candidate are both its number of k-vectors."""
    min_dimension = min(lengths)
    params = [{"lr_wavelength": min_dimension / ns} for ns in range(ns_lo, ns_hi + 1)]

    def cost(param: Dict[str, Any]) -> Tuple[float, ...]:
        return (math.prod(ewald_size(lengths, param["lr_wavelength"])),)

    return params, cost, lambda param: float(cost(param)[0])


def tune_ewald(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    full_neighbor_list: bool = False,
    prefactor: float = 1.0,
    exponent: int = 1,
    ns_lo: int = 1,
    ns_hi: int = 14,
    accuracy: float = 1e-3,
    *,
    smearing: Optional[float] = None,
) -> Tuple[float, Dict[str, Any], float]:
    """Smearing and ``lr_wavelength`` of the fastest Ewald sum meeting ``accuracy``.

    The smearing follows from the cutoff (real-space force error
    ``accuracy/2``, :meth:`~torchpme.tuning.tuner.TunerBase.estimate_smearing`).
    The candidates are ``λ = L_min/n`` for ``n = ns_lo … ns_hi`` (``L_min`` the
    shortest lattice vector), rated by :class:`EwaldErrorEstimate` with the
    safety factor :data:`~torchpme.tuning.tuner.SAFETY`; of those meeting the
    accuracy only the one with the fewest k-vectors can be fastest, and only it
    is timed. ``accuracy`` bounds the RMS errors of forces and potentials (see
    :mod:`torchpme.tuning.tuner`).

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
        cutoff: real-space cutoff.
        neighbor_indices: ``(P, 2)`` pairs within (at least) ``cutoff``.
        neighbor_distances: ``(P,)`` their distances.
        full_neighbor_list: whether the list is full.
        prefactor: the potential's prefactor (timing only; ``accuracy`` is in
            units with prefactor 1).
        exponent: only 1 (Coulomb) is supported.
        ns_lo, ns_hi: range of ``n`` (1 … 14 by default).
        accuracy: target RMS force error (a Python float > 0).
        smearing: tune the reciprocal-space parameters for this smearing
            (kept and returned) instead of the one derived from the cutoff.

    Returns:
        ``(smearing, {"lr_wavelength": λ}, seconds per call)``. If no candidate
        meets the accuracy a ``UserWarning`` is emitted and the candidate with the
        smallest error estimate is returned (its timing is ``inf``).

    Example:
        >>> smearing, params, timing = tune_ewald(  # doctest: +SKIP
        ...     charges, cell, positions, 5.0, indices, distances, accuracy=1e-4)
        >>> calculator = EwaldCalculator(CoulombPotential(smearing), **params)  # doctest: +SKIP
    """
    grid = TuningGrid(
        calculator=EwaldCalculator,
        estimate=EwaldErrorEstimate,
        ranges=[("ns_lo", ns_lo, "ns_hi", ns_hi, 1, 10**6)],
        candidates=partial(_wavelength_candidates, ns_lo=ns_lo, ns_hi=ns_hi),
        hint="Increase `ns_hi` (more k-vectors) or the cutoff.",
    )
    return grid_search(
        grid,
        charges, cell, positions, cutoff, neighbor_indices, neighbor_distances,
        full_neighbor_list, prefactor, exponent, accuracy, smearing,
    )  # fmt: skip
