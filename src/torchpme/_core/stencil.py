"""The stencil arithmetic of spread and gather: scatter, pick, contract.

Spreading ``mesh[c, t] = Σ_i q_ic W_it`` and gathering ``out[i, c] = Σ_t mesh[c, t]
W_it`` over the ``n³`` stencil nodes ``t`` of each atom are adjoint linear maps in
the values, and multilinear in the separable 1-D weights ``W = wx ⊗ wy ⊗ wz``; the
weight gradients reduce to contractions of the stencil values ``H_i(a, b, c) =
Σ_c' q_ic' mesh[c', t(a,b,c)]`` with two of the three 1-D weights, which never
form ``(C, N, n³)`` gradient intermediates. These plain functions (differentiable
by autograd) are the operations of :mod:`torchpme._core.pipeline`; on CUDA
:func:`scatter` and :func:`gather_with_weight_gradients` run fused Triton kernels
(:func:`torchpme._core.execution.kernels_for`).
"""

from typing import Optional, Tuple

import torch

from . import defaults, execution
from .execution import chunk_length

__all__ = [
    "combine_weight_gradients",
    "contract",
    "gather_with_weight_gradients",
    "pick",
    "scatter",
    "weight_gradients",
]


def _node_major(table: torch.Tensor) -> torch.Tensor:
    """``(N, 3, n)`` per-atom table as ``(3, n, N)``: the atom axis innermost, so that
    the products over the stencil below run over long contiguous rows (on the
    ``n``-long rows of the atom-major layout they are several times slower)."""
    return table.permute(1, 2, 0).contiguous()


def _stencil_indices(nodes_t: torch.Tensor) -> torch.Tensor:
    """Flat mesh indices ``(n³, N)`` from the per-axis shares ``(3, n, N)``: node
    ``t = (a n + b) n + c`` of atom ``i`` is ``x[a, i] + y[b, i] + z[c, i]``."""
    n, k = nodes_t.shape[1], nodes_t.shape[2]
    xy = nodes_t[0].reshape(n, 1, k) + nodes_t[1].reshape(1, n, k)
    return (xy.reshape(n, n, 1, k) + nodes_t[2].reshape(1, 1, n, k)).reshape(
        n * n * n, k
    )


def _stencil_weights(weights_t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale_i · wx ⊗ wy ⊗ wz`` as ``(n³, N)`` from ``(3, n, N)`` 1-D weights,
    scaled on the smallest factor."""
    n, k = weights_t.shape[1], weights_t.shape[2]
    wxy = (weights_t[0] * scale).reshape(n, 1, k) * weights_t[1].reshape(1, n, k)
    return (wxy.reshape(n, n, 1, k) * weights_t[2].reshape(1, 1, n, k)).reshape(
        n * n * n, k
    )


@torch.jit.unused
def _chunk_entries() -> int:
    return defaults.STENCIL_ENTRIES


def _atoms_per_chunk(n: int, n_atoms: int, device: torch.device) -> int:
    if torch.jit.is_scripting():  # TorchScript reads no globals: one chunk
        return max(1, n_atoms)
    return chunk_length(_chunk_entries() // (n * n * n), n_atoms, device)


@torch.jit.unused
def _fused_scatter(
    nodes: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, size: int
) -> Optional[torch.Tensor]:
    """:func:`scatter` by a fused kernel where one serves."""
    kernels = execution.kernels_for(weights)
    return None if kernels is None else kernels.scatter(nodes, weights, values, size)


def scatter(
    nodes: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, size: int
) -> torch.Tensor:
    """``mesh[c, t] += values[i, c] W_i(t)`` over the stencil nodes ``t`` of each atom
    (per-axis shares ``nodes`` ``(N, 3, n)``, separable 1-D ``weights`` ``(N, 3,
    n)``): ``(C, size)``, in chunks of atoms."""
    if not torch.jit.is_scripting():
        fused_mesh = _fused_scatter(nodes, weights, values, size)
        if fused_mesh is not None:
            return fused_mesh
    n_channels, n_atoms = values.shape[1], nodes.shape[0]
    mesh = torch.zeros((n_channels, size), dtype=weights.dtype, device=weights.device)
    step = _atoms_per_chunk(weights.shape[2], n_atoms, weights.device)
    for start in range(0, n_atoms, step):
        index = _stencil_indices(_node_major(nodes[start : start + step])).reshape(-1)
        weights_t = _node_major(weights[start : start + step])
        for channel in range(n_channels):
            contributions = _stencil_weights(
                weights_t, values[start : start + step, channel]
            )
            # flat 1-D accumulations per channel, in place on a fresh tensor: the
            # fastest scatter on CPU (2-D and out-of-place forms copy or stride)
            mesh[channel].index_add_(0, index, contributions.reshape(-1))
    return mesh


def gather_with_weight_gradients(
    mesh: torch.Tensor, nodes: torch.Tensor, weights: torch.Tensor, keep: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(out, grads)``: the gathered values ``(N, C)`` of a flattened ``(C, M)``
    mesh and, if ``keep``, the weight gradients of each channel's gather ``(C, N,
    3, n)``, in chunks of atoms (no ``(C, N, n³)`` stencil values are kept).

    The weight gradient of ``Σ_c a_ic out_ic`` for any per-atom ``a`` is then
    ``Σ_c a_ic grads[c, i]``: the gather is linear in the stencil values, and each
    atom's weights touch only its own stencil.
    """
    kernels = execution.kernels_for(mesh)
    if kernels is not None:
        return kernels.gather_with_weight_gradients(mesh, nodes, weights, keep)
    n_channels, n_atoms, n = mesh.shape[0], nodes.shape[0], weights.shape[2]
    out = mesh.new_empty((n_channels, n_atoms))
    grads: Optional[torch.Tensor] = None
    if keep:
        grads = mesh.new_empty((n_channels, n_atoms, 3, n))
    step = _atoms_per_chunk(n, n_atoms, mesh.device)
    for start in range(0, n_atoms, step):
        weights_t = _node_major(weights[start : start + step])
        picked = pick(mesh, nodes[start : start + step])
        out[:, start : start + step] = _contract(picked, weights_t)
        if grads is not None:
            for channel in range(n_channels):
                part = _weight_gradients(picked[channel], weights_t)
                grads[channel, start : start + step] = part.permute(2, 0, 1)
    return out.t(), grads


def pick(mesh: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Stencil values ``(C, n³, N)`` (node-major) of a flattened ``(C, M)`` mesh at
    the stencils of ``nodes`` ``(N, 3, n)``."""
    index = _stencil_indices(_node_major(nodes))
    flat = index.reshape(-1)
    if mesh.shape[0] == 1:  # no stacking copy for the common single channel
        picked = mesh[0].index_select(0, flat).unsqueeze(0)
    else:
        picked = torch.stack(
            [mesh[channel].index_select(0, flat) for channel in range(mesh.shape[0])]
        )
    return picked.reshape(mesh.shape[0], index.shape[0], index.shape[1])


def contract(stencil: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_{abc} stencil[c', abc, i] wx_ia wy_ib wz_ic``: ``(C, N)`` from node-major
    stencil values ``(C, n³, N)`` and 1-D ``weights`` ``(N, 3, n)``."""
    return _contract(stencil, _node_major(weights))


def _contract(stencil: torch.Tensor, weights_t: torch.Tensor) -> torch.Tensor:
    # staged over z, y, x: each stage a product and a sum over a middle axis, on
    # rows of atoms
    n_channels, n, k = stencil.shape[0], weights_t.shape[1], weights_t.shape[2]
    values = stencil.reshape(n_channels, n * n, n, k) * weights_t[2].reshape(1, 1, n, k)
    values = values.sum(2).reshape(n_channels, n, n, k)
    values = (values * weights_t[1].reshape(1, 1, n, k)).sum(2)
    return (values * weights_t[0].reshape(1, n, k)).sum(1)


def weight_gradients(field: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``∂/∂w`` of ``Σ_{abc} field[abc, i] wx_ia wy_ib wz_ic`` for node-major ``field``
    ``(n³, N)``: ``(N, 3, n)``."""
    return _weight_gradients(field, _node_major(weights)).permute(2, 0, 1)


def _weight_gradients(field: torch.Tensor, weights_t: torch.Tensor) -> torch.Tensor:
    """:func:`weight_gradients` as ``(3, n, N)`` from ``(3, n, N)`` weights."""
    n, k = weights_t.shape[1], weights_t.shape[2]
    wx = weights_t[0].reshape(n, 1, k)
    wy = weights_t[1].reshape(1, n, k)
    cube = field.reshape(n, n, n, k)
    over_z = (cube * weights_t[2].reshape(1, 1, n, k)).sum(2)  # (a, b, i)
    grad_x = (over_z * wy).sum(1)
    grad_y = (over_z * wx).sum(0)
    grad_z = (cube * (wx * wy).reshape(n, n, 1, k)).sum(1).sum(0)
    return torch.stack([grad_x, grad_y, grad_z])


def combine_weight_gradients(
    per_atom: torch.Tensor, weight_grads: torch.Tensor
) -> torch.Tensor:
    """``Σ_c a_ic grads[c, i]``: the weight gradient ``(N, 3, n)`` of ``Σ_ic a_ic
    out_ic`` from each channel's ``(C, N, 3, n)`` (see
    :func:`gather_with_weight_gradients`)."""
    return torch.einsum("ic,cijk->ijk", per_atom, weight_grads)
