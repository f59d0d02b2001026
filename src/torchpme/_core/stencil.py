"""Fast spread and gather with hand-written, twice-differentiable backward passes.

Spreading ``mesh[c, t] = Σ_i q_ic W_it`` and gathering ``out[i, c] = Σ_t mesh[c, t]
W_it`` over the ``n³`` stencil nodes ``t`` of each atom are adjoint linear maps in
the values, and multilinear in the separable 1-D weights ``W = wx ⊗ wy ⊗ wz``. So
the backward of each is the other one, plus the weight gradients, which reduce to
contractions of the stencil values ``H_i(a, b, c) = Σ_c' q_ic' mesh[c', t(a,b,c)]``
with two of the three 1-D weights. Writing the backward this way avoids the
``(C, N, n³)`` gradient intermediates of plain autograd; the backward passes are
built from the same differentiable functions, so second derivatives work.

TorchScript cannot compile ``torch.autograd.Function``: under scripting the callers
in :mod:`torchpme._core.mesh` use plain autograd instead.
"""

from typing import List, Optional, Tuple

import torch

from . import chunks
from .chunks import chunk_length

__all__ = ["gather_values", "gather_with_weight_gradients", "spread_values"]


def _scaled_stencil_weights(weights: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale_i · wx ⊗ wy ⊗ wz`` as ``(N·n³,)``, scaled on the smallest factor."""
    n_atoms, n = weights.shape[0], weights.shape[2]
    wx = weights[:, 0] * scale.unsqueeze(-1)
    wxy = (wx.unsqueeze(-1) * weights[:, 1].unsqueeze(-2)).reshape(n_atoms, n * n)
    return (wxy.unsqueeze(-1) * weights[:, 2].unsqueeze(-2)).reshape(-1)


@torch.jit.unused
def _chunk_entries() -> int:
    return chunks.STENCIL_ENTRIES


def _atoms_per_chunk(n: int, n_atoms: int, device: torch.device) -> int:
    if torch.jit.is_scripting():  # TorchScript reads no globals: one chunk
        return max(1, n_atoms)
    return chunk_length(_chunk_entries() // (n * n * n), n_atoms, device)


def flat_indices(nodes: torch.Tensor) -> torch.Tensor:
    """Flat mesh indices ``(N, n³)`` of the stencils from their per-axis shares
    ``nodes`` ``(N, 3, n)``: ``nodes[i, 0, a] + nodes[i, 1, b] + nodes[i, 2, c]`` at
    ``t = (a n + b) n + c``."""
    n_atoms, n = nodes.shape[0], nodes.shape[2]
    xy = nodes[:, 0].unsqueeze(-1) + nodes[:, 1].unsqueeze(-2)
    return (xy.unsqueeze(-1) + nodes[:, 2].reshape(n_atoms, 1, 1, n)).reshape(
        n_atoms, n * n * n
    )


def scatter(
    nodes: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, size: int
) -> torch.Tensor:
    """``mesh[c, t] += values[i, c] W_i(t)`` over the stencil nodes ``t`` of each atom
    (per-axis shares ``nodes`` ``(N, 3, n)``, separable 1-D ``weights`` ``(N, 3,
    n)``): ``(C, size)``, in chunks of atoms."""
    n_channels, n_atoms = values.shape[1], nodes.shape[0]
    mesh = torch.zeros((n_channels, size), dtype=weights.dtype, device=weights.device)
    step = _atoms_per_chunk(weights.shape[2], n_atoms, weights.device)
    for start in range(0, n_atoms, step):
        index = flat_indices(nodes[start : start + step]).reshape(-1)
        for channel in range(n_channels):
            contributions = _scaled_stencil_weights(
                weights[start : start + step], values[start : start + step, channel]
            )
            # flat 1-D accumulations per channel, in place on a fresh tensor: the
            # fastest scatter on CPU (2-D and out-of-place forms copy or stride)
            mesh[channel].index_add_(0, index, contributions)
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
    n_channels, n_atoms, n = mesh.shape[0], nodes.shape[0], weights.shape[2]
    out = mesh.new_empty((n_channels, n_atoms))
    grads: Optional[torch.Tensor] = None
    if keep:
        grads = mesh.new_empty((n_channels, n_atoms, 3, n))
    step = _atoms_per_chunk(n, n_atoms, mesh.device)
    for start in range(0, n_atoms, step):
        part = weights[start : start + step]
        picked = pick(mesh, nodes[start : start + step])
        out[:, start : start + step] = contract(picked, part)
        if grads is not None:
            for channel in range(n_channels):
                grads[channel, start : start + step] = weight_gradients(
                    picked[channel], part
                )
    return out.t(), grads


def pick(mesh: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Stencil values ``(C, N, n³)`` of a flattened ``(C, M)`` mesh."""
    flat = flat_indices(nodes)
    index = flat.reshape(-1)
    if mesh.shape[0] == 1:  # no stacking copy for the common single channel
        picked = mesh[0].index_select(0, index).unsqueeze(0)
    else:
        picked = torch.stack(
            [mesh[channel].index_select(0, index) for channel in range(mesh.shape[0])]
        )
    return picked.reshape(mesh.shape[0], flat.shape[0], flat.shape[1])


def contract(stencil: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_{abc} stencil[..., i, abc] wx_ia wy_ib wz_ic`` staged over z, y, x: ``(..., N)``.

    Each stage is a batched matrix-vector product (much faster than multiply-and-sum
    on small trailing axes).
    """
    n = weights.shape[2]
    shape: List[int] = list(stencil.shape[:-1])
    values = stencil.reshape(shape + [n * n, n]) @ weights[:, 2].unsqueeze(-1)
    values = values.reshape(shape + [n, n]) @ weights[:, 1].unsqueeze(-1)
    return (values.reshape(shape + [n]) * weights[:, 0]).sum(-1)


def weight_gradients(field: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``∂/∂w`` of ``Σ_{abc} field[i, abc] wx_ia wy_ib wz_ic``: ``(N, 3, n)``."""
    n_atoms, n = weights.shape[0], weights.shape[2]
    wx, wy, wz = weights[:, 0], weights[:, 1], weights[:, 2]
    rows = field.reshape(n_atoms, n * n, n)  # (N, ab, c)
    over_z = (rows @ wz.unsqueeze(-1)).reshape(n_atoms, n, n)  # (N, a, b)
    grad_x = (over_z @ wy.unsqueeze(-1)).squeeze(-1)
    grad_y = (wx.unsqueeze(1) @ over_z).squeeze(1)
    wxy = (wx.unsqueeze(-1) * wy.unsqueeze(-2)).reshape(n_atoms, 1, n * n)
    grad_z = (wxy @ rows).squeeze(1)
    return torch.stack([grad_x, grad_y, grad_z], dim=1)


class _Spread(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nodes, weights, values, size: int):
        ctx.save_for_backward(nodes, weights, values)
        return scatter(nodes, weights, values, size)

    @staticmethod
    def backward(ctx, grad_mesh):
        nodes, weights, values = ctx.saved_tensors
        grad_weights = grad_values = None
        if torch.is_grad_enabled():
            # double backward: through the Functions, so these are differentiable
            if ctx.needs_input_grad[2]:
                grad_values = _Gather.apply(nodes, weights, grad_mesh)
            stencil = pick(grad_mesh, nodes) if ctx.needs_input_grad[1] else None
        else:
            # one pick serves both gradients
            stencil = pick(grad_mesh, nodes)
            if ctx.needs_input_grad[2]:
                grad_values = contract(stencil, weights).t()
        if ctx.needs_input_grad[1] and stencil is not None:
            field = torch.einsum("ic,cit->it", values, stencil)
            grad_weights = weight_gradients(field, weights)
        return None, grad_weights, grad_values, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nodes, weights, mesh):
        stencil = pick(mesh, nodes)
        ctx.save_for_backward(nodes, weights, mesh)
        # the picked values serve the weight gradient of a first-order backward
        ctx.stencil = stencil if weights.requires_grad else None
        return contract(stencil, weights).t()

    @staticmethod
    def backward(ctx, grad_out):
        nodes, weights, mesh = ctx.saved_tensors
        grad_weights = grad_mesh = None
        if ctx.needs_input_grad[2]:
            grad_mesh = _Spread.apply(nodes, weights, grad_out, mesh.shape[1])
        if ctx.needs_input_grad[1]:
            stencil = ctx.stencil
            if torch.is_grad_enabled() or stencil is None:
                # double backward: picked again so that autograd sees the mesh
                stencil = pick(mesh, nodes)
            field = torch.einsum("ic,cit->it", grad_out, stencil)
            grad_weights = weight_gradients(field, weights)
        return None, grad_weights, grad_mesh


def spread_values(
    nodes: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, size: int
) -> torch.Tensor:
    """Spread ``values (N, C)`` with 1-D ``weights (N, 3, n)`` at stencil ``nodes
    (N, n³)``; returns the nodestened ``(C, size)`` mesh."""
    return _Spread.apply(nodes, weights, values, size)


def gather_values(
    nodes: torch.Tensor, weights: torch.Tensor, mesh: torch.Tensor
) -> torch.Tensor:
    """Gather a nodestened ``(C, M)`` mesh at the stencils: ``(N, C)``."""
    return _Gather.apply(nodes, weights, mesh)
