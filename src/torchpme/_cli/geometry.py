"""A structure's geometry under a homogeneous strain, and what evaluating it returns.

The front ends differentiate the energy through positions and through a strain
``ε`` applied to positions and cell, ``r → r (1 + ε)``, ``A → A (1 + ε)``, at
``ε = 0``: the forces are ``−∂E/∂r`` and the stress ``(1/V) ∂E/∂ε``.
"""

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional

import torch

from ..neighbors import compute_neighbors, pair_distances
from .parameters import Parameters

__all__ = [
    "Evaluation",
    "Geometry",
    "all_pairs",
    "strain_leaves",
    "strained_geometry",
    "stress_from",
]


@dataclass
class Evaluation:
    """Results of :func:`evaluate`, as float64 CPU tensors (units of the
    prefactor: energy, energy/length, energy/length³, energy/charge)."""

    energy: torch.Tensor
    forces: torch.Tensor
    stress: Optional[torch.Tensor]
    potentials: torch.Tensor
    energies: torch.Tensor
    n_pairs: int
    #: the shortest pair distance (``inf`` without pairs), which sets the size of
    #: the largest force summands and so the rounding error of a float32 run
    closest: float = math.inf


class Geometry(NamedTuple):
    """Positions and cell under a homogeneous strain ``ε = 0`` (differentiable
    leaves), with the pairs and their distances recomputed from them."""

    #: ``(N, 3)`` leaf positions (forces are minus the gradient to these)
    unstrained: torch.Tensor
    #: ``(3, 3)`` strain leaf, or None without stress
    strain: Optional[torch.Tensor]
    #: ``(3, 3)`` strained cell, ``(N, 3)`` strained positions
    cell: torch.Tensor
    positions: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    #: the ``periodic`` argument of the calculators
    periodic: Optional[torch.Tensor]

    def leaves(self) -> List[torch.Tensor]:
        """What to differentiate the energy to: positions (and strain)."""
        return [self.unstrained] + ([] if self.strain is None else [self.strain])

    def evaluation(self, energy, gradients, potentials, energies) -> "Evaluation":
        """The :class:`Evaluation` of ``energy`` with ``gradients`` to
        :meth:`leaves` (forces, and the stress from the strain)."""
        stress = None
        if self.strain is not None:
            stress = stress_from(gradients[1], self.cell)
            stress = stress.to(torch.float64).cpu()
        distances = self.distances.detach()
        return Evaluation(
            energy=energy.detach().to(torch.float64).cpu(),
            forces=(-gradients[0]).detach().to(torch.float64).cpu(),
            stress=stress,
            potentials=potentials.detach().to(torch.float64).cpu(),
            energies=energies.detach().to(torch.float64).cpu(),
            n_pairs=int(self.indices.shape[0]),
            closest=float(distances.min()) if distances.numel() > 0 else math.inf,
        )


def strained_geometry(
    parameters: Parameters,
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: List[bool],
    stress: bool,
) -> Geometry:
    """The :class:`Geometry` of a structure for :func:`evaluate` (a strain leaf
    when ``stress`` and 3-D periodic; all pairs for the direct method)."""
    want_stress = stress and all(periodic)
    positions, strain, strained_cell, strained_positions = strain_leaves(
        cell, positions, want_stress
    )
    if parameters.method == "direct":
        indices = all_pairs(positions.shape[0], positions.device)
        shifts = torch.zeros(
            indices.shape[0], 3, dtype=torch.int64, device=positions.device
        )
        periodic_tensor = None
    else:
        indices, _, shifts = compute_neighbors(
            positions.detach(),
            cell.detach(),
            parameters.cutoff,
            periodic,
            return_shifts=True,
        )
        periodic_tensor = (
            None
            if all(periodic)
            else torch.tensor(periodic, dtype=torch.bool, device=positions.device)
        )
    distances = pair_distances(strained_positions, strained_cell, indices, shifts)
    return Geometry(
        positions,
        strain if want_stress else None,
        strained_cell,
        strained_positions,
        indices,
        distances,
        periodic_tensor,
    )


def strain_leaves(cell: torch.Tensor, positions: torch.Tensor, want_stress: bool):
    """``(positions, strain, strained cell, strained positions)``: leaf positions
    and a ``(3, 3)`` zero strain leaf (differentiable when ``want_stress``),
    and the cell and positions deformed by ``I + ε``."""
    positions = positions.detach().requires_grad_(True)
    like = {"dtype": positions.dtype, "device": positions.device}
    strain = torch.zeros(3, 3, **like, requires_grad=want_stress)
    deformation = torch.eye(3, **like) + strain
    return positions, strain, cell.detach() @ deformation, positions @ deformation


def stress_from(virial: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """The stress ``(∂E/∂ε + ∂E/∂εᵀ)/2V`` from the energy's gradient to the
    strain, detached."""
    volume = torch.abs(torch.linalg.det(cell.detach()))
    return (0.5 * (virial + virial.t()) / volume).detach()


def all_pairs(n_atoms: int, device: torch.device) -> torch.Tensor:
    """Every pair ``i < j`` once, ``(P, 2)``."""
    pairs = torch.triu_indices(n_atoms, n_atoms, offset=1, device=device)
    return pairs.t().contiguous()
