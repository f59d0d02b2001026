"""``CoulombPotential``, the Gaussian-smeared Coulomb kernel and the 2-D slab
correction shared by the ``1/r`` potentials."""

import math
from typing import Optional

import torch

from .._core.coulomb_kernel import coulomb_kernel
from .potential import Potential, _masked, _require_smearing

__all__ = ["CoulombPotential"]


def _pbc_correction(
    periodic: Optional[torch.Tensor],
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
) -> torch.Tensor:
    """Slab correction for ``1/r`` in a cell periodic along exactly two directions.

    With ``z_i`` the Cartesian coordinate along the non-periodic axis (the one with
    its index), ``L`` the length of that lattice vector, ``V`` the full cell volume
    and, per channel, ``Q = Σ q_i``, ``M = Σ q_i z_i``, ``M₂ = Σ q_i z_i²``:

    .. math::

        Δφ_i = \\frac{4π}{V} \\left(z_i M − \\tfrac12 (M_2 + Q z_i^2)
               − \\frac{Q L^2}{12}\\right)

    so that ``½ Σ_i q_i Δφ_i = (2π/V)(M² − Q M₂ − Q² L²/12)``. Zero unless exactly
    two directions are periodic (``periodic=None`` means all three). Branch-free in
    the values of ``periodic`` (works under ``torch.vmap``).

    Args:
        periodic: ``(3,)`` bools, or ``None``.
        positions: ``(N, 3)`` Cartesian positions.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        charges: ``(N, C)`` charges.

    Returns:
        ``(N, C)`` potential correction, dtype of ``charges``.

    Reference: Yeh & Berkowitz, J. Chem. Phys. 111, 3155 (1999),
    doi:10.1063/1.479595; Ballenegger, Arnold & Cerdà, J. Chem. Phys. 131, 094107
    (2009), doi:10.1063/1.3216473 (charged slabs).
    """
    if periodic is None:
        return torch.zeros_like(charges)
    open_axis = torch.logical_not(periodic.to(torch.bool)).to(positions.dtype)
    is_2d = torch.sum(open_axis) == 1.0
    z = (positions @ open_axis).unsqueeze(-1)
    length_sq = torch.sum(open_axis * torch.sum(cell * cell, dim=1))
    volume = torch.abs(torch.linalg.det(cell))
    total = torch.sum(charges, dim=0)
    moment = torch.sum(charges * z, dim=0)
    second = torch.sum(charges * z * z, dim=0)
    slab = (4.0 * math.pi / volume) * (
        z * moment - 0.5 * (second + total * z * z) - total * length_sq / 12.0
    )
    return torch.where(is_2d, slab, torch.zeros_like(slab))


class CoulombPotential(Potential):
    """Coulomb potential ``1/r``, split with a Gaussian charge smearing.

    .. math::

        v(r) = \\frac{1}{r}, \\qquad
        v_\\mathrm{lr}(r) = \\frac{\\mathrm{erf}(r/\\sqrt{2}σ)}{r}, \\qquad
        \\hat v_\\mathrm{lr}(k) = \\frac{4π e^{−σ^2 k^2/2}}{k^2}

    (times the prefactor), with ``v_lr(0)`` evaluated as 0 (``r`` clamped at 1e-12;
    the limit ``√(2/π)/σ`` is :meth:`self_contribution`) and ``v̂_lr(0) = 0``.

    Args:
        smearing: ``σ`` (> 0), or ``None`` for the bare potential only.
        exclusion_radius: see :class:`Potential`.
        exclusion_degree: see :class:`Potential`.
        prefactor: unit factor (see :mod:`torchpme.prefactors`).

    Example:
        >>> potential = CoulombPotential(smearing=1.0)
        >>> r = torch.tensor([1.0, 2.0])
        >>> potential.sr_from_dist(r) + potential.lr_from_dist(r)
        tensor([1.0000, 0.5000])

    Reference: Ewald, Ann. Phys. 369, 253 (1921), doi:10.1002/andp.19213690304.
    """

    def __init__(
        self,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
        prefactor: float = 1.0,
    ):
        super().__init__(smearing, exclusion_radius, exclusion_degree, prefactor)

    @torch.jit.export
    def from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A / r`` (``r`` clamped at 1e-15), ``(P,)``."""
        return _masked(self.prefactor / torch.clamp(dist, min=1e-15), pair_mask)

    @torch.jit.export
    def lr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A erf(r/√2σ) / r`` (0 at ``r = 0``), ``(P,)``."""
        smearing = _require_smearing(self.smearing, "lr_from_dist")
        value = torch.erf(dist / smearing / 2.0**0.5) / torch.clamp(dist, min=1e-12)
        return _masked(self.prefactor * value, pair_mask)

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``A 4π e^{−σ²k²/2} / k²`` (0 at ``k = 0``), shape of ``k_sq``."""
        smearing = _require_smearing(self.smearing, "lr_from_k_sq")
        return coulomb_kernel(k_sq, smearing, self.prefactor)

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``A √(2/π) / σ`` (= ``lim_{r→0} v_lr(r)``), 0-dim."""
        smearing = _require_smearing(self.smearing, "self_contribution")
        return self.prefactor * (2.0 / math.pi) ** 0.5 / smearing

    @torch.jit.export
    def background_correction(self) -> torch.Tensor:
        """``A π σ²`` (= ``½ ∫ erfc(r/√2σ)/r d³r``), 0-dim."""
        smearing = _require_smearing(self.smearing, "background_correction")
        return self.prefactor * math.pi * smearing**2

    @torch.jit.export
    def pbc_correction(
        self,
        periodic: Optional[torch.Tensor],
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """2-D slab correction (see :func:`_pbc_correction`) times ``A``, ``(N, C)``."""
        return self.prefactor * _pbc_correction(periodic, positions, cell, charges)
