"""The mesh part of :meth:`torchpme.multipoles.MultipoleCalculator.forward_batch`:
systems of equal mesh size share one multipole plan and stacked spreads, FFTs and
gathers (as :mod:`torchpme.calculators._mesh_batch` does for charges)."""

import math
from typing import Optional, Tuple

import torch

from .._core.multipole_mesh import convolve_multipoles, multipole_plan
from ._mesh_batch import mesh_groups

__all__ = ["multipole_mesh_batch"]


def multipole_mesh_batch(
    calculator: torch.nn.Module,
    alpha: float,
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    quadrupoles: Optional[torch.Tensor],
    cells: torch.Tensor,
    positions: torch.Tensor,
    system_index: torch.Tensor,
    order: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(φ, E, G)`` of the reciprocal part of every system of a packed batch,
    each with the background of its own net charge (``G`` empty for ``order``
    1)."""
    n_atoms, n_systems = charges.shape[0], cells.shape[0]
    inverse_cells = torch.linalg.inv_ex(cells)[0]
    volumes = torch.abs(torch.linalg.det(cells))
    if quadrupoles is None:
        quadrupoles = charges.new_zeros(n_atoms, 3, 3)
    potential = torch.zeros_like(charges)
    field = torch.zeros_like(dipoles)
    gradient = dipoles.new_zeros(n_atoms if order == 2 else 0, 3, 3)
    for shape, systems in mesh_groups(calculator, cells).items():
        members = torch.tensor(systems, device=positions.device)
        lookup = torch.full((n_systems,), -1, dtype=torch.int64, device=members.device)
        lookup[members] = torch.arange(len(systems), device=members.device)
        atoms = torch.nonzero(lookup[system_index] >= 0).squeeze(1)
        owners = system_index[atoms]
        inverse = inverse_cells[owners]
        plan = multipole_plan(
            positions[atoms], inverse, list(shape), calculator.scheme, order,
            lookup[owners], len(systems),
        )  # fmt: skip
        kernel = calculator._filter(cells[members], list(shape))
        kernel = kernel / volumes[members].reshape(-1, 1, 1, 1)
        phi, slopes, curvature = convolve_multipoles(
            plan, charges[atoms], dipoles[atoms], quadrupoles[atoms], inverse, kernel
        )
        potential = potential.index_copy(0, atoms, phi)
        field = field.index_copy(0, atoms, -slopes)
        if order == 2:
            gradient = gradient.index_copy(0, atoms, -curvature)
    net = torch.zeros_like(volumes).index_add(0, system_index, charges)
    prefactor = calculator.potential.prefactor.to(charges.dtype)
    background = prefactor * math.pi * net / (alpha**2 * volumes)
    return potential - background[system_index], field, gradient
