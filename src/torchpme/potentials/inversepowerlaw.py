"""``InversePowerLawPotential``: ``1/r^p`` split with the incomplete Gamma function."""

import math
from typing import Optional

import torch

from .._core.powerlaw_kernel import powerlaw_shape
from .._core.special import gamma, gammaincc_over_powerlaw
from .coulomb import _pbc_correction
from .potential import Potential, _masked, _require_smearing

__all__ = ["InversePowerLawPotential"]


class InversePowerLawPotential(Potential):
    """Inverse power law ``1/r^p`` (``p = 1 … 6``), range separated.

    Writing ``r^{−p} = Γ(p/2)^{−1} ∫_0^∞ t^{p/2−1} e^{−r² t} dt`` and keeping the
    Gaussians with ``t < 1/2σ²`` in the long-range part gives, with the regularised
    lower incomplete Gamma function ``P``,

    .. math::

        v_\\mathrm{lr}(r) = \\frac{P(p/2, r^2/2σ^2)}{r^p}, \\qquad
        \\hat v_\\mathrm{lr}(k) = \\frac{π^{3/2} (2σ^2)^{a}}{Γ(p/2)}
            \\, Γ(a, x)\\, x^{−a}, \\quad a = \\frac{3 − p}{2}, \\; x = \\frac{σ^2 k^2}{2}

    (times the prefactor). ``v_lr`` is finite at ``r = 0``. At ``k = 0`` the kernel
    is 0 for ``p <= 3`` (the divergent term cancels for neutral systems) and its
    limit ``2 C_p/(p − 3)`` for ``p > 3``. For ``p = 1`` this is
    :class:`CoulombPotential`, including the 2-D slab correction.

    Args:
        exponent: ``p``, an integer 1–6.
        smearing: ``σ`` (> 0), or ``None`` for the bare potential only.
        exclusion_radius: see :class:`Potential`.
        exclusion_degree: see :class:`Potential`.
        prefactor: unit factor.

    ``exponent`` is also kept as a float64 0-dim buffer.

    Reference: Williams, J. Chem. Phys. 55, 3131 (1971), doi:10.1063/1.1676559
    (Ewald sums of ``r^{−p}``).
    """

    def __init__(
        self,
        exponent: int,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
        prefactor: float = 1.0,
    ):
        super().__init__(smearing, exclusion_radius, exclusion_degree, prefactor)
        # raises the house ValueError for any exponent but 1, …, 6
        gammaincc_over_powerlaw(exponent, torch.tensor(1.0, dtype=torch.float64))
        self._p: int = int(exponent)
        self.register_buffer(
            "exponent", torch.tensor(float(exponent), dtype=torch.float64)
        )

    @torch.jit.export
    def from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A r^{−p}`` (``r`` clamped at 1e-15), ``(P,)``."""
        value = torch.pow(torch.clamp(dist, min=1e-15), -self.exponent)
        return _masked(self.prefactor * value, pair_mask)

    @torch.jit.export
    def lr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A P(p/2, r²/2σ²) / r^p``, finite at ``r = 0``, ``(P,)``."""
        smearing = _require_smearing(self.smearing, "lr_from_dist")
        half_p = self.exponent / 2.0
        x = torch.clamp(0.5 * dist * dist / smearing**2, min=1e-15)
        value = torch.special.gammainc(half_p, x) / torch.pow(x, half_p)
        value = value / (2.0 * smearing**2) ** half_p
        return _masked(self.prefactor * value, pair_mask)

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``A C_p Γ(a, x) x^{−a}`` with ``x = σ²k²/2``, shape of ``k_sq``."""
        smearing = _require_smearing(self.smearing, "lr_from_k_sq")
        a = (3.0 - self._p) / 2.0
        c_p = math.pi**1.5 / gamma(self.exponent / 2.0) * (2.0 * smearing**2) ** a
        shape = powerlaw_shape(k_sq, smearing.to(k_sq.dtype), self._p)
        return (self.prefactor * c_p.to(k_sq.dtype)) * shape

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``A / Γ(p/2 + 1) / (2σ²)^{p/2}`` (= ``v_lr(0)``), 0-dim."""
        smearing = _require_smearing(self.smearing, "self_contribution")
        half_p = self.exponent / 2.0
        return self.prefactor / gamma(half_p + 1.0) / (2.0 * smearing**2) ** half_p

    @torch.jit.export
    def background_correction(self) -> torch.Tensor:
        """``½ ∫ v_sr d³r = A π^{3/2} (2σ²)^{(3−p)/2} / ((3 − p) Γ(p/2))`` for
        ``p < 3``; 0 (no prefactor) for ``p >= 3``, where the integral diverges."""
        smearing = _require_smearing(self.smearing, "background_correction")
        if self._p >= 3:
            return torch.zeros_like(smearing)
        a = (3.0 - self._p) / 2.0
        return (
            self.prefactor
            * math.pi**1.5
            * (2.0 * smearing**2) ** a
            / ((3.0 - self._p) * gamma(self.exponent / 2.0))
        )

    @torch.jit.export
    def pbc_correction(
        self,
        periodic: Optional[torch.Tensor],
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """2-D slab correction for ``p = 1``, zeros otherwise; ``(N, C)``."""
        if self._p == 1:
            return self.prefactor * _pbc_correction(periodic, positions, cell, charges)
        return self.prefactor * torch.zeros_like(charges)
