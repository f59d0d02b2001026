"""Batches of meshes from one interpolation plan, transformed a few at a time.

One plan for ``B`` meshes (made with ``mesh_index``) sorts the atoms by mesh first,
so the atoms of consecutive meshes are consecutive rows of the sorted plan: a stack
of meshes is a slice of it, its nodes shifted to the stack's own first mesh, run
through the single-plan pipeline (:mod:`torchpme._core.pipeline`) or energy
(:mod:`torchpme._core.mesh_energy`).
"""

from typing import List

import torch

from .mesh import MeshPlan
from .mesh_energy import sorted_energy
from .permutation import permute_rows
from .pipeline import numel, run

__all__ = ["convolve_stacks", "convolve_stacks_energy"]


@torch.jit.unused
def convolve_stacks(
    plan: MeshPlan,
    values: torch.Tensor,
    kernel: torch.Tensor,
    meshes: List[int],
    atoms: List[int],
) -> torch.Tensor:
    """:func:`convolve` of a plan of ``B`` meshes, transformed a few meshes at a time.

    One plan for all the meshes (made with ``mesh_index``) sorts the atoms by mesh
    first, so the atoms of consecutive meshes are consecutive rows of the sorted
    plan: each stack is a slice of it, its nodes shifted to the stack's own first
    mesh. Splits (not slices) keep the backward to one concatenation per input.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan` with
            ``mesh_index``.
        values: ``(N, C)`` per-atom values, in the atoms' order.
        kernel: ``(B, n0, n1, n2//2+1)`` real filters, one per mesh.
        meshes: meshes per stack (summing to ``B``).
        atoms: atoms per stack (summing to ``N``), in the order of the meshes.

    Returns:
        ``(N, C)`` filtered values at the atoms, in the atoms' order.
    """
    results = _stacks(plan, values, kernel, meshes, atoms, None)
    result = torch.cat(results)
    return torch.zeros_like(result).index_copy(0, plan.order, result)


@torch.jit.unused
def convolve_stacks_energy(
    plan: MeshPlan,
    values: torch.Tensor,
    kernel: torch.Tensor,
    meshes: List[int],
    atoms: List[int],
    mesh_index: torch.Tensor,
) -> torch.Tensor:
    """The ``(B,)`` energies of :func:`convolve_energy` per mesh, transformed a few
    meshes at a time as :func:`convolve_stacks` (same arguments, and the
    ``(N,)`` ``mesh_index`` of the plan)."""
    owners = mesh_index.index_select(0, plan.order)
    return torch.cat(_stacks(plan, values, kernel, meshes, atoms, owners))


def _stacks(plan, values, kernel, meshes: List[int], atoms: List[int], owners):
    """Per stack: the sorted potentials, or with ``owners`` (the sorted atoms'
    meshes) the energies of its meshes."""
    ns = plan.shape
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    mesh_size = numel(ns)
    # the flat index of a node is the sum of its three per-axis shares: a stack's
    # first mesh moves to 0 by shifting the first axis's share
    axis = torch.zeros((3, 1), dtype=plan.stencil.dtype, device=plan.stencil.device)
    axis[0] = 1
    parts = [plan.stencil, weights, sorted_values]
    if owners is not None:
        parts.append(owners)
    results: List[torch.Tensor] = []
    first = 0
    for split, part_kernel, count in zip(
        zip(*(torch.split(part, atoms) for part in parts)),
        torch.split(kernel, meshes, dim=-4),
        meshes,
    ):
        nodes, part_weights, part_values = split[:3]
        if first > 0:
            nodes = nodes - axis * (first * mesh_size)
        shape = [count] + list(ns)
        if owners is None:
            results.append(
                run(
                    ["spread", "filter", "gather"],
                    nodes,
                    part_weights,
                    part_kernel,
                    part_values,
                    shape,
                )
            )
        else:
            owners_of_stack = split[3] - first
            results.append(
                sorted_energy(
                    nodes, part_weights, part_values, part_kernel, shape,
                    owners_of_stack,
                )
            )  # fmt: skip
        first += count
    return results
