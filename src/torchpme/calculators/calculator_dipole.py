"""``CalculatorDipole``: interactions of point dipoles, direct or by Ewald summation."""

from typing import List, Optional

import torch

from .._core import kspace
from .._core.pairlist import indices_of
from .._core.pairs import (
    chunk_size,
    dipole_pair_sum,
    ewald_sum,
    wrap_positions,
)
from .._core.validation import (
    ArgumentAssertionError,
    check_like,
    check_positive,
    check_shape,
    message,
)
from .._utils import _validate_parameters
from ..potentials import PotentialDipole

__all__ = ["CalculatorDipole"]


class CalculatorDipole(torch.nn.Module):
    """Field-like per-atom potentials of point dipoles ``μ_i``.

    ``V_i = ½ Σ_j T(r_ij) μ_j`` with the dipole interaction tensor
    ``T(r) = I/r³ − 3 r⊗r/r⁵`` (``PotentialDipole.from_dist``); the dipolar energy is
    ``E = Σ_i μ_i · V_i``. With a smearing the sum is split as in Ewald: the short
    range over neighbour pairs, the long range over k-vectors
    ``(1/2V) Σ_k G(k) k Σ_j (μ_j·k) cos(k·(r_i − r_j))``, minus the self term, plus
    the surface term ``background_correction(V) · Σ_j μ_j`` (zero for ``epsilon = 0``,
    the conducting boundary).

    Args:
        potential: a :class:`~torchpme.potentials.PotentialDipole`.
        full_neighbor_list: whether the neighbour list is full.
        lr_wavelength: ``λ`` of the k-space sum; must be given exactly when the
            potential has a smearing.

    Reference: de Leeuw, Perram & Smith, Proc. R. Soc. A 373, 27 (1980),
    doi:10.1098/rspa.1980.0135; Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
    doi:10.1063/1.1605941.

    Example:
        >>> import torch
        >>> from torchpme import CalculatorDipole, PotentialDipole
        >>> # two unit dipoles along z, one above the other: E = μ·T·μ = −2/r³
        >>> dipoles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
        >>> pairs = torch.tensor([[0, 1]])
        >>> vectors = positions[1:] - positions[:1]
        >>> calculator = CalculatorDipole(PotentialDipole())
        >>> potentials = calculator(dipoles, torch.eye(3), positions, pairs, vectors)
        >>> (dipoles * potentials).sum()
        tensor(-0.2500)
    """

    def __init__(
        self,
        potential: PotentialDipole,
        full_neighbor_list: bool = False,
        lr_wavelength: Optional[float] = None,
    ):
        super().__init__()
        if not isinstance(potential, PotentialDipole):
            raise TypeError(
                message("potential", "a PotentialDipole", f"{type(potential)}")
            )
        if (lr_wavelength is None) != (potential.smearing is None):
            smearing = potential.smearing
            raise ArgumentAssertionError(
                message(
                    "lr_wavelength",
                    "set exactly when the potential has a smearing (both or neither)",
                    f"lr_wavelength={lr_wavelength} with smearing="
                    f"{None if smearing is None else float(smearing)}",
                )
            )
        if lr_wavelength is not None:
            check_positive("lr_wavelength", lr_wavelength)
        self.potential = potential
        self.lr_wavelength = lr_wavelength
        self.full_neighbor_list: bool = full_neighbor_list

    def _compute_rspace(
        self,
        dipoles: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
    ) -> torch.Tensor:
        if self.potential.smearing is None:
            tensors = self.potential.from_dist(neighbor_vectors)
        else:
            tensors = self.potential.sr_from_dist(neighbor_vectors)
        return dipole_pair_sum(
            dipoles, neighbor_indices, tensors, self.full_neighbor_list
        )

    def _compute_kspace(
        self, dipoles: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        lr_wavelength = self.lr_wavelength
        if lr_wavelength is None:
            raise ValueError(message("lr_wavelength", "set", "None"))
        lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
        # half of the k-set, each ±k pair once with weight 2 (the sum is even in k)
        kvectors, weights = kspace.half_kvectors_for_ewald(
            cell, kspace.ewald_size(lengths, lr_wavelength, positions.shape[0])
        )
        kernel = self.potential.lr_from_k_sq(torch.sum(kvectors * kvectors, dim=-1))
        kernel = kernel * weights
        chunk = chunk_size(positions.shape[0])
        volume = torch.abs(torch.linalg.det(cell))
        wrapped = wrap_positions(positions, cell)
        potential = ewald_sum(wrapped, dipoles, kvectors, kernel, chunk, dipolar=True)
        potential = potential / volume - dipoles * self.potential.self_contribution()
        surface = self.potential.background_correction(volume)
        potential = potential + surface * torch.sum(dipoles, dim=0)
        return potential / 2.0

    def forward(
        self,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom potentials ``(N, 3)``; the energy is ``(dipoles * result).sum()``.

        Args:
            dipoles: ``(N, 3)`` point dipoles.
            cell: ``(3, 3)`` cell, rows are lattice vectors.
            positions: ``(N, 3)`` Cartesian positions.
            neighbor_indices: ``(P, 2)`` pairs ``(i, j)`` (or, in eager mode, a
                :class:`~torchpme.neighbors.PairList`).
            neighbor_vectors: ``(P, 3)`` pair vectors ``r_j − r_i`` (with images).
        """
        if not torch.jit.is_scripting():
            neighbor_indices = indices_of(neighbor_indices)
        check_shape("dipoles", dipoles, [-1, 3], "(N, 3)")
        check_like("dipoles", dipoles, positions, "positions")
        check_shape("neighbor_vectors", neighbor_vectors, [-1, 3], "(P, 3)")
        _validate_parameters(
            dipoles,
            cell,
            positions,
            neighbor_indices,
            torch.linalg.norm(neighbor_vectors, dim=-1),
            cell_required=self.potential.smearing is not None,
        )
        potential = self._compute_rspace(dipoles, neighbor_indices, neighbor_vectors)
        if self.potential.smearing is None:
            return potential
        return potential + self._compute_kspace(dipoles, cell, positions)
