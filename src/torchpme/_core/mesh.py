"""Spreading points onto a periodic mesh and gathering them back: pure functions.

The design is plan → execute: :func:`interpolation_plan` turns positions into a
*plan*, a pair of tensors ``(indices, weights)`` of shape ``(N, 3, n)`` holding, for
each atom and lattice axis, the ``n`` mesh indices it touches and their 1-D weights.
:func:`spread` (points → mesh) and :func:`gather` (mesh → points) execute a plan and
are exact adjoints: ``<spread(q), m> == <q, gather(m)>``. The 3-D weight of atom
``i`` on node ``(a, b, c)`` is the product of the three 1-D weights (the
interpolation is separable). Mesh sizes are Python ints, fixed before the hot path.
"""

from typing import List, Optional, Tuple

import torch

from . import stencil
from .weights import evaluate_weights

__all__ = ["gather", "interpolation_plan", "mesh_coordinates", "spread"]


def interpolation_plan(
    positions: torch.Tensor,
    inverse_cell: torch.Tensor,
    ns: List[int],
    coefficients: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mesh indices and 1-D weights of every atom along every lattice axis.

    With fractional coordinates ``f = r · cell⁻¹`` and ``u = n_d f_d``, the reference
    point is ``round(u)`` (round half to even) for an odd number of nodes ``n`` and
    ``floor(u) + 1/2`` for even ``n``; the nodes are ``base − ⌊(n−1)/2⌋ … base +
    ⌊n/2⌋`` (modulo the mesh size) and their weights are the polynomials of
    :mod:`torchpme._core.weights` evaluated at ``x = u − reference``.

    Args:
        positions: ``(N, 3)`` Cartesian positions (anywhere; they are wrapped).
        inverse_cell: ``(3, 3)`` inverse of the cell (rows = lattice vectors), or
            ``(N, 3, 3)``, one per atom (batches of systems).
        ns: mesh size along each lattice vector, three Python ints.
        coefficients: ``(n, n)`` weight polynomial table.

    Returns:
        ``(indices, weights)``: int64 ``(N, 3, n)`` and ``(N, 3, n)`` in the
        positions dtype.
    """
    n = coefficients.shape[0]
    if inverse_cell.dim() == 3:
        fractional = (positions.unsqueeze(1) @ inverse_cell).squeeze(1)
    else:
        fractional = positions @ inverse_cell
    # wrapping first keeps |u| small, so float32 stays accurate far from the cell;
    # floor has a zero derivative, so gradients are unchanged
    fractional = fractional - torch.floor(fractional.detach())
    sizes = torch.tensor(ns, dtype=positions.dtype, device=positions.device)
    u = fractional * sizes
    if n % 2 == 1:
        base = torch.round(u.detach())
        x = u - base
    else:
        base = torch.floor(u.detach())
        x = u - (base + 0.5)
    first = base.to(torch.int64) - (n - 1) // 2
    steps = torch.arange(n, dtype=torch.int64, device=positions.device)
    indices = (first.unsqueeze(-1) + steps) % sizes.to(torch.int64).unsqueeze(-1)
    return indices, evaluate_weights(x, coefficients)


def _flat_indices(
    indices: torch.Tensor, ns: List[int], mesh_index: Optional[torch.Tensor]
) -> torch.Tensor:
    """Flat node indices ``(N, n³)`` of each atom's stencil, x slowest, z fastest.

    With ``mesh_index`` the flat index addresses a stack of meshes.
    """
    n_atoms, n = indices.shape[0], indices.shape[2]
    ix, iy, iz = indices[:, 0], indices[:, 1], indices[:, 2]
    if mesh_index is not None:
        ix = ix + (mesh_index * ns[0]).unsqueeze(-1)
    flat = (ix[:, :, None, None] * ns[1] + iy[:, None, :, None]) * ns[2] + iz[
        :, None, None, :
    ]
    return flat.reshape(n_atoms, n * n * n)


def spread(
    indices: torch.Tensor,
    weights: torch.Tensor,
    values: torch.Tensor,
    ns: List[int],
    mesh_index: Optional[torch.Tensor] = None,
    n_meshes: int = 1,
) -> torch.Tensor:
    """Spread per-atom values onto the mesh (points → mesh).

    ``mesh[c, a, b, e] = Σ_i values[i, c] · W_i(a, b, e)``.

    Args:
        indices, weights: plan from :func:`interpolation_plan`.
        values: ``(N, C)`` per-atom values (e.g. charges).
        ns: mesh size, three Python ints.
        mesh_index: ``(N,)`` int64, for a stack of meshes (a batch of systems): the
            mesh each atom is spread onto.
        n_meshes: number of meshes in the stack.

    Returns:
        ``(C, n0, n1, n2)`` mesh, channels first; with ``mesh_index``, a stack
        ``(C, n_meshes, n0, n1, n2)``.
    """
    flat = _flat_indices(indices, ns, mesh_index)
    size = n_meshes * ns[0] * ns[1] * ns[2]
    weights = weights.to(values.dtype)
    if torch.jit.is_scripting():
        mesh = stencil.scatter(flat, stencil.expand_weights(weights), values, size)
    else:
        mesh = stencil.spread_values(flat, weights, values, size)
    n_channels = values.shape[1]
    if mesh_index is None:
        return mesh.reshape(n_channels, ns[0], ns[1], ns[2])
    return mesh.reshape(n_channels, n_meshes, ns[0], ns[1], ns[2])


def gather(
    indices: torch.Tensor,
    weights: torch.Tensor,
    mesh: torch.Tensor,
    mesh_index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Interpolate mesh values at the atoms (mesh → points), adjoint of spread.

    ``out[i, c] = Σ_{a,b,e} mesh[c, a, b, e] · W_i(a, b, e)``.

    Args:
        indices, weights: plan from :func:`interpolation_plan`.
        mesh: ``(C, n0, n1, n2)`` mesh values, or a stack ``(C, M, n0, n1, n2)``.
        mesh_index: ``(N,)`` int64, the mesh of the stack each atom reads.

    Returns:
        ``(N, C)`` values at the atoms.
    """
    ns = [mesh.shape[-3], mesh.shape[-2], mesh.shape[-1]]
    flat = _flat_indices(indices, ns, mesh_index)
    values = mesh.reshape(mesh.shape[0], -1)
    weights = weights.to(mesh.dtype)
    if torch.jit.is_scripting():
        return stencil.contract(stencil.pick(values, flat), weights).t()
    return stencil.gather_values(flat, weights, values)


def mesh_coordinates(cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
    """Cartesian node positions ``(n0, n1, n2, 3)``: ``(i/n0, j/n1, k/n2)·cell``."""
    axes = [torch.arange(n, dtype=cell.dtype, device=cell.device) / n for n in ns]
    grid = torch.stack(torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij"), -1)
    return grid @ cell
