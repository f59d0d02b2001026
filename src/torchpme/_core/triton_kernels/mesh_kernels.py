"""Triton kernels of the stencil: scatter (spread) and gather with the weight
gradients (see :mod:`torchpme._core.triton_kernels`)."""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .. import defaults
from .launch import launch

__all__ = ["gather_with_weight_gradients", "scatter"]


@triton.jit
def _atom_block(nodes, weights, n_atoms, N: tl.constexpr, NP: tl.constexpr,
                BLOCK: tl.constexpr):  # fmt: skip
    """A program's atoms, their mask, the node columns (``NP ≥ N``) and their mask,
    the atoms' row offsets in the ``(N, 3, n)`` plan, and their z nodes and
    weights ``(BLOCK, NP)``."""
    atoms = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = atoms < n_atoms
    column = tl.arange(0, NP)
    tile = live[:, None] & (column < N)[None, :]
    row = atoms.to(tl.int64) * (3 * N)
    z = tl.load(nodes + row[:, None] + 2 * N + column[None, :], mask=tile, other=0)
    wz = tl.load(weights + row[:, None] + 2 * N + column[None, :], mask=tile, other=0)
    return atoms, live, column, tile, row, z, wz


@triton.jit
def _scatter_kernel(
    nodes, weights, values, mesh, n_atoms, n_channels, size,
    N: tl.constexpr, NP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    atoms, live, _, tile, row, z, wz = _atom_block(
        nodes, weights, n_atoms, N, NP, BLOCK
    )
    target = mesh  # a pointer moved by whole meshes: 64-bit offsets
    for channel in range(n_channels):
        q = tl.load(values + atoms * n_channels + channel, mask=live, other=0)
        for a in tl.static_range(N):
            x = tl.load(nodes + row + a, mask=live, other=0)
            qx = q * tl.load(weights + row + a, mask=live, other=0)
            for b in tl.static_range(N):
                y = tl.load(nodes + row + N + b, mask=live, other=0)
                qxy = qx * tl.load(weights + row + N + b, mask=live, other=0)
                index = (x + y)[:, None] + z
                tl.atomic_add(
                    target + index, qxy[:, None] * wz, mask=tile, sem="relaxed"
                )
        target += size


@triton.jit
def _gather_kernel(
    mesh, nodes, weights, out, grads, n_atoms, n_channels, size,
    KEEP: tl.constexpr, N: tl.constexpr, NP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    atoms, live, column, tile, row, z, wz = _atom_block(
        nodes, weights, n_atoms, N, NP, BLOCK
    )
    source = mesh
    for channel in range(n_channels):
        total = tl.zeros((BLOCK,), dtype=wz.dtype)
        grad_x = tl.zeros((BLOCK, NP), dtype=wz.dtype)
        grad_y = tl.zeros((BLOCK, NP), dtype=wz.dtype)
        grad_z = tl.zeros((BLOCK, NP), dtype=wz.dtype)
        for a in tl.static_range(N):
            x = tl.load(nodes + row + a, mask=live, other=0)
            wx = tl.load(weights + row + a, mask=live, other=0)
            for b in tl.static_range(N):
                y = tl.load(nodes + row + N + b, mask=live, other=0)
                wy = tl.load(weights + row + N + b, mask=live, other=0)
                line = tl.load(source + (x + y)[:, None] + z, mask=tile, other=0)
                along_z = tl.sum(line * wz, axis=1)
                total += wx * wy * along_z
                if KEEP:
                    # the gradient of wx_a collects wy_b Σ_c wz_c m_abc, and so on
                    grad_x += tl.where(column[None, :] == a, (wy * along_z)[:, None], 0)
                    grad_y += tl.where(column[None, :] == b, (wx * along_z)[:, None], 0)
                    grad_z += (wx * wy)[:, None] * line
        tl.store(out + channel * n_atoms + atoms, total, mask=live)
        if KEEP:
            place = (atoms.to(tl.int64) + channel * n_atoms) * (3 * N)
            place = place[:, None] + column[None, :]
            tl.store(grads + place, grad_x, mask=tile)
            tl.store(grads + place + N, grad_y, mask=tile)
            tl.store(grads + place + 2 * N, grad_z, mask=tile)
        source += size


def scatter(
    nodes: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, size: int
) -> torch.Tensor:
    """:func:`torchpme._core.stencil.scatter`: ``(C, size)`` mesh of ``values (N,
    C)`` spread with ``weights (N, 3, n)`` at ``nodes (N, 3, n)``."""
    n, padded = weights.shape[2], triton.next_power_of_2(weights.shape[2])
    n_atoms, n_channels = values.shape
    mesh = torch.zeros((n_channels, size), dtype=weights.dtype, device=weights.device)
    if n_atoms == 0:
        return mesh
    launch(
        _scatter_kernel, n_atoms, defaults.TRITON_ATOMS_PER_PROGRAM, weights.device,
        nodes.contiguous(), weights.contiguous(), values.contiguous(), mesh,
        n_atoms, n_channels, size, N=n, NP=padded,
    )  # fmt: skip
    return mesh


def gather_with_weight_gradients(
    mesh: torch.Tensor, nodes: torch.Tensor, weights: torch.Tensor, keep: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """:func:`torchpme._core.stencil.gather_with_weight_gradients`: ``(out, grads)``,
    the values ``(N, C)`` of the flattened ``(C, M)`` mesh at the atoms and, if
    ``keep``, each channel's weight gradients ``(C, N, 3, n)``."""
    n, padded = weights.shape[2], triton.next_power_of_2(weights.shape[2])
    n_channels, size = mesh.shape
    n_atoms = nodes.shape[0]
    out = mesh.new_empty((n_channels, n_atoms))
    grads = mesh.new_empty((n_channels, n_atoms, 3, n)) if keep else None
    if n_atoms > 0:
        launch(
            _gather_kernel, n_atoms, defaults.TRITON_ATOMS_PER_PROGRAM, mesh.device,
            mesh.contiguous(), nodes.contiguous(), weights.contiguous(), out,
            out if grads is None else grads, n_atoms, n_channels, size,
            KEEP=keep, N=n, NP=padded,
        )  # fmt: skip
    return out.t(), grads
