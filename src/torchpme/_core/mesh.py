"""Where atoms land on a periodic mesh: the interpolation plan.

The design is plan → execute: :func:`interpolation_plan` turns positions into a
:class:`MeshPlan`, a named record of the mesh shape and three tensors: ``stencil``
``(N, 3, n)``, the nodes each atom touches along each axis as their shares of the
flat mesh index (x slowest, z fastest; the flat indices of an atom's ``n³`` nodes
are the sums of one share per axis, formed a chunk of atoms at a time, never for
all atoms at once), ``weights`` ``(N, 3, n)``, the 1-D weights of each atom along
each lattice axis, and ``order`` ``(N,)``, the permutation that sorts the atoms by
mesh position: stencil and weights are stored in that order, so that neighbouring
atoms touch neighbouring memory (as FINUFFT sorts its points), which makes scatter
and gather about twice as fast on CPU. :func:`spread`, :func:`gather` and
:func:`convolve` (spread, filter and gather in one step) execute a plan through
the one mesh pipeline, :mod:`torchpme._core.pipeline`. The 3-D weight of
atom ``i`` on node ``(a, b, c)`` is the product of the three 1-D weights (the
interpolation is separable). Mesh sizes are Python ints, fixed before the hot path.
"""

from typing import List, NamedTuple, Optional

import torch

from .permutation import permute_rows
from .pipeline import run
from .weights import Scheme, evaluate_weights

__all__ = [
    "MeshPlan",
    "Placement",
    "convolve",
    "gather",
    "interpolation_plan",
    "mesh_coordinates",
    "mesh_shape",
    "placement",
    "spread",
]


class MeshPlan(NamedTuple):
    """Where every atom lands on the mesh: built once per positions, then executed
    by :mod:`torchpme._core.pipeline`.

    Attributes:
        stencil: ``(N, 3, n)`` int64 shares of the flat node index per axis
            (node ``(a, b, c)`` of atom ``i`` is at ``stencil[i, 0, a] +
            stencil[i, 1, b] + stencil[i, 2, c]``), for the atoms in ``order``.
        weights: ``(N, 3, n)`` 1-D interpolation weights, in the same order.
        order: ``(N,)`` the atoms sorted by mesh position.
        shape: mesh points along each lattice vector, three Python ints.
        n_meshes: meshes in a stack (a batch of systems), 0 for a single mesh.
        scheme: the interpolation :class:`~torchpme._core.weights.Scheme` that
            made the weights.
    """

    stencil: torch.Tensor
    weights: torch.Tensor
    order: torch.Tensor
    shape: List[int]
    n_meshes: int
    scheme: Scheme


def mesh_shape(plan: MeshPlan) -> List[int]:
    """``[n0, n1, n2]``, or ``[M, n0, n1, n2]`` for a stack of ``M`` meshes."""
    if plan.n_meshes == 0:
        return list(plan.shape)
    return [plan.n_meshes] + list(plan.shape)


def interpolation_plan(
    positions: torch.Tensor,
    inverse_cell: torch.Tensor,
    ns: List[int],
    scheme: Scheme,
    mesh_index: Optional[torch.Tensor] = None,
    n_meshes: int = 0,
) -> MeshPlan:
    """Stencil indices and 1-D weights of every atom, sorted by mesh position.

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
        scheme: the interpolation scheme (Lagrange or B-spline on ``n`` nodes).
        mesh_index: ``(N,)`` int64, for a stack of meshes (a batch of systems): the
            mesh of each atom.
        n_meshes: the number of meshes of that stack (0 without ``mesh_index``).

    Returns:
        The :class:`MeshPlan`, weights in the positions' dtype.
    """
    where = placement(
        positions, inverse_cell, ns, scheme.coefficients.shape[0], mesh_index
    )
    weights = evaluate_weights(where.offsets, scheme.coefficients)
    return MeshPlan(where.stencil, weights, where.order, list(ns), n_meshes, scheme)


class Placement(NamedTuple):
    """Where atoms land, before any weights: the stencil and ``order`` of a
    :class:`MeshPlan` and the sorted offsets ``x`` its weights are evaluated at
    (several weight polynomials, e.g. their derivatives, share one placement)."""

    stencil: torch.Tensor
    offsets: torch.Tensor
    order: torch.Tensor


def placement(
    positions: torch.Tensor,
    inverse_cell: torch.Tensor,
    ns: List[int],
    n: int,
    mesh_index: Optional[torch.Tensor] = None,
) -> Placement:
    """The :class:`Placement` of :func:`interpolation_plan` for ``n`` nodes per
    axis (its docstring gives the reference points and nodes)."""
    if inverse_cell.dim() == 3:
        fractional = (positions.unsqueeze(1) @ inverse_cell).squeeze(1)
    else:
        fractional = positions @ inverse_cell
    # wrapping first keeps |u| small, so float32 stays accurate far from the cell;
    # floor has a zero derivative, so gradients are unchanged
    fractional = fractional - torch.floor(fractional.detach())
    # filled on the device: a tensor made from the Python list would be a copy from
    # the host (a synchronisation on an accelerator, not allowed in a CUDA graph)
    sizes = torch.empty(3, dtype=positions.dtype, device=positions.device)
    for axis in range(3):
        sizes[axis : axis + 1].fill_(float(ns[axis]))
    u = fractional * sizes
    if n % 2 == 1:
        base = torch.round(u.detach())
        x = u - base
    else:
        base = torch.floor(u.detach())
        x = u - (base + 0.5)
    # int64: CPU scatter kernels are many times slower with int32 indices
    index_dtype = torch.int64
    first = base.to(index_dtype) - (n - 1) // 2
    steps = torch.arange(n, dtype=index_dtype, device=positions.device)
    nodes = (first.unsqueeze(-1) + steps) % sizes.to(index_dtype).unsqueeze(-1)
    if mesh_index is not None:
        offsets = mesh_index.to(index_dtype) * ns[0]
        nodes[:, 0] += offsets.unsqueeze(-1)
    # each axis's share of the flat index: the flat index of node (a, b, c) of
    # atom i is the sum nodes[i, 0, a] + nodes[i, 1, b] + nodes[i, 2, c]
    nodes[:, 0] *= ns[1] * ns[2]
    nodes[:, 1] *= ns[2]
    order = torch.argsort(nodes[:, :, 0].sum(-1))
    # gathers both ways (see _core.permutation), not a scatter-add backward
    return Placement(nodes.index_select(0, order), permute_rows(x, order), order)


def mesh_coordinates(cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
    """Cartesian node positions ``(n0, n1, n2, 3)``: ``(i/n0, j/n1, k/n2)·cell``."""
    axes = [torch.arange(n, dtype=cell.dtype, device=cell.device) / n for n in ns]
    grid = torch.stack(torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij"), -1)
    return grid @ cell


def _unsorted(plan: MeshPlan, result: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(result).index_copy(0, plan.order, result)


def spread(plan: MeshPlan, values: torch.Tensor) -> torch.Tensor:
    """Spread per-atom values onto the mesh (points → mesh).

    ``mesh[c, a, b, e] = Σ_i values[i, c] · W_i(a, b, e)``.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan`.
        values: ``(N, C)`` per-atom values (e.g. charges), in the atoms' order.

    Returns:
        ``(C, n0, n1, n2)`` mesh, channels first; for a stack of ``M`` meshes,
        ``(C, M, n0, n1, n2)``.
    """
    shape = mesh_shape(plan)
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    mesh = run(["spread"], plan.stencil, weights, None, sorted_values, shape)
    return mesh.reshape([values.shape[1]] + shape)


def gather(plan: MeshPlan, mesh: torch.Tensor) -> torch.Tensor:
    """Interpolate mesh values at the atoms (mesh → points), adjoint of spread.

    ``out[i, c] = Σ_{a,b,e} mesh[c, a, b, e] · W_i(a, b, e)``.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan`.
        mesh: ``(C, n0, n1, n2)`` mesh values, or a stack ``(C, M, n0, n1, n2)``.

    Returns:
        ``(N, C)`` values at the atoms, in the atoms' order.
    """
    weights = plan.weights.to(mesh.dtype)
    flat = mesh.reshape(mesh.shape[0], -1)
    result = run(["gather"], plan.stencil, weights, None, flat, mesh_shape(plan))
    return _unsorted(plan, result)


def convolve(
    plan: MeshPlan, values: torch.Tensor, kernel: torch.Tensor
) -> torch.Tensor:
    """Spread, filter and gather in one step: ``gather(filter(spread(values)))``.

    ``φ_i = Σ_t W_it · IFFT[G · FFT[Σ_j q_j W_j]]_t`` with unnormalised transforms
    (``fft_norm="backward"``, ``ifft_norm="forward"``), per channel.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan`.
        values: ``(N, C)`` per-atom values (e.g. charges), in the atoms' order.
        kernel: real filter, even in ``k``, broadcastable to ``(C, n0, n1,
            n2//2+1)`` (or ``(C, M, n0, n1, n2//2+1)`` for a stack of ``M``
            meshes).

    Returns:
        ``(N, C)`` filtered values at the atoms, in the atoms' order.
    """
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    shape = mesh_shape(plan)
    result = run(
        ["spread", "filter", "gather"],
        plan.stencil,
        weights,
        kernel,
        sorted_values,
        shape,
    )
    return _unsorted(plan, result)
