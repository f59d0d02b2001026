"""``PotentialDipole``: interaction tensors of point dipoles, range separated."""

import math
from typing import Optional

import torch

from .._core.coulomb_kernel import coulomb_kernel
from .._core.validation import check_finite_number, message
from .potential import (
    _check_exclusion,
    _exclusion_cutoff,
    _require_smearing,
    _smearing_buffer,
)

__all__ = ["PotentialDipole"]


def _hessian_tensor(
    vectors: torch.Tensor, isotropic: torch.Tensor, radial: torch.Tensor
) -> torch.Tensor:
    """``b I − c r⊗r`` from per-pair ``b = −φ'/r`` and ``c = (φ'' − φ'/r)/r²``.

    This is ``−∇∇φ(r)`` for a radial function ``φ``, shape ``(P, 3, 3)``.
    """
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    outer = vectors.unsqueeze(-1) * vectors.unsqueeze(-2)
    return isotropic[..., None, None] * eye - radial[..., None, None] * outer


class PotentialDipole(torch.nn.Module):
    """Dipole–dipole interaction tensor, split like the Coulomb potential.

    The field-like interaction of dipoles at separation ``r`` is ``T = −∇∇(1/r)``;
    its long-range part is ``−∇∇`` of the smeared Coulomb potential
    ``erf(√α r)/r`` with ``α = 1/2σ²``, whose kernel is Coulomb's ``4π e^{−σ²k²/2}/k²``:

    .. math::

        T(\\mathbf r) = \\frac{I}{r^3} − \\frac{3\\,\\mathbf r⊗\\mathbf r}{r^5}, \\qquad
        T_\\mathrm{lr} = B(r) I − C(r)\\, \\mathbf r⊗\\mathbf r,

    .. math::

        B = \\frac{\\mathrm{erf}(\\sqrt α r)}{r^3} − 2\\sqrt{\\frac{α}{π}}
            \\frac{e^{−α r^2}}{r^2}, \\qquad
        C = \\frac{3\\,\\mathrm{erf}(\\sqrt α r)}{r^5} − 2\\sqrt{\\frac{α}{π}}
            \\left(2α + \\frac{3}{r^2}\\right) \\frac{e^{−α r^2}}{r^2}

    (times the prefactor). Inputs are pair vectors ``(P, 3)``; tensors are
    ``(P, 3, 3)``. ``epsilon`` is the dielectric constant of the surroundings for the
    surface term, with ``epsilon = 0`` meaning no surface term (conducting
    boundary, as in torch-pme 0.5).

    Args:
        smearing: ``σ`` (> 0), or ``None`` for the bare interaction only.
        exclusion_radius: ``r_ex`` (> 0), or ``None``; see :class:`Potential`.
        exclusion_degree: ``d``, an int >= 1.
        epsilon: dielectric constant of the surroundings (>= 0; 0: no surface term).
        prefactor: unit factor.

    ``smearing``, ``exclusion_radius`` (when set), ``epsilon`` and ``prefactor`` are
    float64 0-dim buffers.

    Reference: Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
    doi:10.1063/1.1605941; de Leeuw, Perram & Smith, Proc. R. Soc. A 373, 27 (1980),
    doi:10.1098/rspa.1980.0135 (surface term).
    """

    def __init__(
        self,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
        epsilon: float = 0.0,
        prefactor: float = 1.0,
    ):
        super().__init__()
        _smearing_buffer(self, smearing)
        _check_exclusion(exclusion_radius, exclusion_degree)
        if exclusion_radius is None:
            self.exclusion_radius = None
        else:
            self.register_buffer(
                "exclusion_radius",
                torch.tensor(float(exclusion_radius), dtype=torch.float64),
            )
        self.exclusion_degree: int = exclusion_degree
        if not (float(epsilon) >= 0.0 and math.isfinite(float(epsilon))):
            raise ValueError(message("epsilon", "a finite number >= 0", f"{epsilon}"))
        self.register_buffer(
            "epsilon", torch.tensor(float(epsilon), dtype=torch.float64)
        )
        check_finite_number("prefactor", float(prefactor))
        self.register_buffer(
            "prefactor", torch.tensor(float(prefactor), dtype=torch.float64)
        )

    @torch.jit.export
    def f_cutoff(self, vector: torch.Tensor) -> torch.Tensor:
        """Exclusion switch ``f_cut(|r|)`` of :class:`Potential`, ``(P, 1)``."""
        radius = self.exclusion_radius
        if radius is None:
            raise ValueError(
                message("exclusion_radius", "set to use `f_cutoff`", "None")
            )
        dist = torch.linalg.norm(vector, dim=-1, keepdim=True)
        return _exclusion_cutoff(dist / radius, self.exclusion_degree)

    @torch.jit.export
    def from_dist(self, vector: torch.Tensor) -> torch.Tensor:
        """Bare tensor ``A (I/r³ − 3 r⊗r/r⁵)``, ``(P, 3, 3)``."""
        dist = torch.linalg.norm(vector, dim=-1)
        inverse_cube = 1.0 / dist**3
        tensor = _hessian_tensor(vector, inverse_cube, 3.0 * inverse_cube / dist**2)
        return self.prefactor * tensor

    @torch.jit.export
    def lr_from_dist(self, vector: torch.Tensor) -> torch.Tensor:
        """Long-range tensor ``A (B I − C r⊗r)``, ``(P, 3, 3)``."""
        smearing = _require_smearing(self.smearing, "lr_from_dist")
        alpha = 0.5 / smearing**2
        dist = torch.linalg.norm(vector, dim=-1)
        dist_sq = dist * dist
        smeared = torch.erf(torch.sqrt(alpha) * dist) / dist**3
        gaussian = 2.0 * torch.sqrt(alpha / math.pi) * torch.exp(-alpha * dist_sq)
        isotropic = smeared - gaussian / dist_sq
        radial = (3.0 * smeared - gaussian * (2.0 * alpha + 3.0 / dist_sq)) / dist_sq
        return self.prefactor * _hessian_tensor(vector, isotropic, radial)

    @torch.jit.export
    def sr_from_dist(self, vector: torch.Tensor) -> torch.Tensor:
        """Short-range tensor: ``T − T_lr``, or ``−T_lr f_cut`` with an exclusion."""
        _require_smearing(self.smearing, "sr_from_dist")
        if self.exclusion_radius is None:
            return self.from_dist(vector) - self.lr_from_dist(vector)
        return -self.lr_from_dist(vector) * self.f_cutoff(vector).unsqueeze(-1)

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``A 4π e^{−σ²k²/2} / k²`` (0 at ``k = 0``), the Coulomb kernel."""
        smearing = _require_smearing(self.smearing, "lr_from_k_sq")
        return coulomb_kernel(k_sq, smearing, self.prefactor)

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``A (4π/3) (α/π)^{3/2}`` (= ``T_lr(0)/I``), 0-dim."""
        smearing = _require_smearing(self.smearing, "self_contribution")
        alpha = 0.5 / smearing**2
        return self.prefactor * (4.0 * math.pi / 3.0) * (alpha / math.pi) ** 1.5

    @torch.jit.export
    def background_correction(self, volume: torch.Tensor) -> torch.Tensor:
        """Surface term ``A 4π / ((2ε + 1) V)``; 0 for ``ε = 0`` (no surface term)."""
        surface = self.prefactor * 4.0 * math.pi / (2.0 * self.epsilon + 1.0) / volume
        return torch.where(self.epsilon == 0.0, self.epsilon, surface)
