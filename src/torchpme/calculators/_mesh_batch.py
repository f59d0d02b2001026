"""Batches of systems on meshes: systems with equal mesh sizes share one
interpolation plan and stacked spreads, FFTs and gathers.

On CPU a group is transformed a few meshes at a time (see
:data:`torchpme._core.defaults.MESH_STACK`): their buffers are then reused rather
than faulted in afresh. With a fixed mesh all systems form one group, found
without reading the cells on the host.
"""

from typing import Dict, Iterator, List, Optional, Tuple

import torch

from .._core import defaults, execution, kspace
from .._core import mesh as core_mesh
from .._core.mesh import convolve
from .._core.mesh_energy import convolve_energy
from .._core.stacks import convolve_stacks, convolve_stacks_energy
from .._core.validation import check_like, message

__all__ = ["check_mesh_filter", "convolve_groups"]


def mesh_groups(calculator, cells: torch.Tensor) -> Dict[Tuple[int, ...], List[int]]:
    """The systems of each mesh size (reads the cells on the host unless the
    calculator has a fixed mesh)."""
    if calculator.fixed_mesh[0] > 0:
        return {tuple(calculator.fixed_mesh): list(range(cells.shape[0]))}
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for system, lengths in enumerate(
        torch.linalg.norm(cells.detach(), dim=-1).tolist()
    ):
        ns = kspace.mesh_size(lengths, calculator.mesh_spacing)
        groups.setdefault(tuple(ns), []).append(system)
    return groups


def convolve_groups(
    calculator,
    charges: torch.Tensor,
    cells: torch.Tensor,
    positions: torch.Tensor,
    system_index: torch.Tensor,
    energy: bool,
    filters: Optional[List[torch.Tensor]] = None,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per group of equal mesh size, ``(result, atoms, members)``: the mesh
    potentials of its ``atoms`` divided by the volume, or with ``energy`` the
    ``(len(members),)`` energies ``Σ q · φ`` of its systems ``members``.
    ``filters``: the systems' filters, if given (``mesh_filter`` of each cell)."""
    inverse_cells = torch.linalg.inv_ex(cells)[0]
    volumes = torch.abs(torch.linalg.det(cells))
    for shape, systems in mesh_groups(calculator, cells).items():
        yield _convolve_group(
            calculator, charges, cells, positions, system_index, inverse_cells,
            volumes, systems, list(shape), energy, filters,
        )  # fmt: skip


def _convolve_group(
    calculator, charges, cells, positions, system_index, inverse_cells, volumes,
    systems: List[int], ns: List[int], energy: bool, filters,
):  # fmt: skip
    device = positions.device
    if len(systems) == cells.shape[0]:
        # the whole batch: nothing is selected (no index made on the host)
        members = torch.arange(len(systems), device=device)
        atoms = torch.arange(positions.shape[0], device=device)
        owners = local = system_index
        group_cells, group_volumes = cells, volumes
        group_positions, group_charges = positions, charges
    else:
        members = torch.tensor(systems, device=device)
        atoms = torch.nonzero(torch.isin(system_index, members)).squeeze(1)
        lookup = torch.zeros(cells.shape[0], dtype=torch.int64, device=device)
        lookup[members] = torch.arange(len(systems), device=device)
        owners = system_index.index_select(0, atoms)
        local = lookup.index_select(0, owners)
        group_cells = cells.index_select(0, members)
        group_volumes = volumes.index_select(0, members)
        group_positions = positions.index_select(0, atoms)
        group_charges = charges.index_select(0, atoms)
    plan = core_mesh.interpolation_plan(
        group_positions,
        inverse_cells.index_select(0, owners),
        ns,
        calculator.scheme,
        local,
        len(systems),
    )
    # 1/V in the kernel, not on the atoms: the charges reach the convolution as
    # they are
    if filters is None:
        kernel = calculator._filter(group_cells, ns)
    else:
        for system in systems:
            check_mesh_filter(filters[system], ns, positions)
        kernel = torch.stack([filters[system] for system in systems])
    kernel = kernel / group_volumes.reshape(-1, 1, 1, 1)
    step = execution.chunk_length(
        defaults.MESH_STACK // (ns[0] * ns[1] * ns[2]), len(systems), device
    )
    if step >= len(systems):  # one stack: no counts read on the host
        if energy:
            return convolve_energy(plan, group_charges, kernel, local), atoms, members
        return convolve(plan, group_charges, kernel), atoms, members
    per_mesh = torch.bincount(local, minlength=len(systems)).tolist()
    starts = range(0, len(systems), step)
    meshes = [min(step, len(systems) - start) for start in starts]
    counts = [sum(per_mesh[start : start + step]) for start in starts]
    if energy:
        result = convolve_stacks_energy(
            plan, group_charges, kernel, meshes, counts, local
        )
    else:
        result = convolve_stacks(plan, group_charges, kernel, meshes, counts)
    return result, atoms, members


def check_mesh_filter(
    mesh_filter: torch.Tensor, ns: List[int], positions: torch.Tensor
) -> None:
    """A given filter must be that of a mesh of the current size."""
    expected = [ns[0], ns[1], ns[2] // 2 + 1]
    if list(mesh_filter.shape) != expected:
        raise ValueError(
            message(
                "mesh_filter",
                f"the filter of this cell's {ns} mesh, shape {expected} "
                "(from mesh_filter(cell), with `periodic` for an open system)",
                f"shape {list(mesh_filter.shape)}",
            )
        )
    check_like("mesh_filter", mesh_filter, positions, "positions")
