"""Triton kernels of the pairs: distances and the short-range Coulomb sum, with
their backward passes (see :mod:`torchpme._core.triton_kernels`)."""

import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .. import defaults
from .launch import INTERPRETED, launch

__all__ = [
    "coulomb_pair_sum",
    "coulomb_pair_sum_backward",
    "pair_distances",
    "pair_distances_backward",
]

_erfc = libdevice.erfc


@triton.jit
def _pair_vectors(positions, cell, first, second, shifts, pairs, live):
    """``(i, j, s0, s1, s2, dx, dy, dz)`` of a block of pairs."""
    i = tl.load(first + pairs, mask=live, other=0).to(tl.int64) * 3
    j = tl.load(second + pairs, mask=live, other=0).to(tl.int64) * 3
    where = pairs.to(tl.int64) * 3
    dtype = positions.dtype.element_ty
    s0 = tl.load(shifts + where, mask=live, other=0).to(dtype)
    s1 = tl.load(shifts + where + 1, mask=live, other=0).to(dtype)
    s2 = tl.load(shifts + where + 2, mask=live, other=0).to(dtype)
    dx = tl.load(positions + j, mask=live, other=0) - tl.load(
        positions + i, mask=live, other=0
    )
    dy = tl.load(positions + j + 1, mask=live, other=0) - tl.load(
        positions + i + 1, mask=live, other=0
    )
    dz = tl.load(positions + j + 2, mask=live, other=0) - tl.load(
        positions + i + 2, mask=live, other=0
    )
    dx += s0 * tl.load(cell) + s1 * tl.load(cell + 3) + s2 * tl.load(cell + 6)
    dy += s0 * tl.load(cell + 1) + s1 * tl.load(cell + 4) + s2 * tl.load(cell + 7)
    dz += s0 * tl.load(cell + 2) + s1 * tl.load(cell + 5) + s2 * tl.load(cell + 8)
    return i, j, s0, s1, s2, dx, dy, dz


@triton.jit
def _distances_kernel(
    positions, cell, first, second, shifts, out, n_pairs, BLOCK: tl.constexpr
):
    pairs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pairs < n_pairs
    _, _, _, _, _, dx, dy, dz = _pair_vectors(
        positions, cell, first, second, shifts, pairs, live
    )
    tl.store(out + pairs, tl.sqrt(dx * dx + dy * dy + dz * dz), mask=live)


@triton.jit
def _distances_backward_kernel(
    positions, cell, first, second, shifts, distances, grad, grad_positions,
    grad_cell, n_pairs, POSITIONS: tl.constexpr, CELL: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pairs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pairs < n_pairs
    i, j, s0, s1, s2, dx, dy, dz = _pair_vectors(
        positions, cell, first, second, shifts, pairs, live
    )
    r = tl.load(distances + pairs, mask=live, other=0)
    g = tl.load(grad + pairs, mask=live, other=0)
    # the derivative of the norm is taken as 0 at r = 0
    scale = tl.where(r == 0, 0, g / tl.where(r == 0, 1, r))
    px, py, pz = dx * scale, dy * scale, dz * scale
    if POSITIONS:
        tl.atomic_add(grad_positions + j, px, mask=live, sem="relaxed")
        tl.atomic_add(grad_positions + j + 1, py, mask=live, sem="relaxed")
        tl.atomic_add(grad_positions + j + 2, pz, mask=live, sem="relaxed")
        tl.atomic_add(grad_positions + i, -px, mask=live, sem="relaxed")
        tl.atomic_add(grad_positions + i + 1, -py, mask=live, sem="relaxed")
        tl.atomic_add(grad_positions + i + 2, -pz, mask=live, sem="relaxed")
    if CELL:  # Σ_p s_pk pull_pl, one block's share
        tl.atomic_add(grad_cell, tl.sum(s0 * px), sem="relaxed")
        tl.atomic_add(grad_cell + 1, tl.sum(s0 * py), sem="relaxed")
        tl.atomic_add(grad_cell + 2, tl.sum(s0 * pz), sem="relaxed")
        tl.atomic_add(grad_cell + 3, tl.sum(s1 * px), sem="relaxed")
        tl.atomic_add(grad_cell + 4, tl.sum(s1 * py), sem="relaxed")
        tl.atomic_add(grad_cell + 5, tl.sum(s1 * pz), sem="relaxed")
        tl.atomic_add(grad_cell + 6, tl.sum(s2 * px), sem="relaxed")
        tl.atomic_add(grad_cell + 7, tl.sum(s2 * py), sem="relaxed")
        tl.atomic_add(grad_cell + 8, tl.sum(s2 * pz), sem="relaxed")


def pair_distances(
    positions: torch.Tensor,
    cell: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    shifts: torch.Tensor,
) -> torch.Tensor:
    """``(P,)`` distances ``‖r_j − r_i + S A‖`` (``shifts`` of any number type)."""
    n_pairs = first.shape[0]
    out = positions.new_empty(n_pairs)
    if n_pairs > 0:
        launch(
            _distances_kernel, n_pairs, defaults.TRITON_PAIRS_PER_PROGRAM,
            positions.device,
            positions.contiguous(), cell.contiguous(), first.contiguous(),
            second.contiguous(), shifts.contiguous(), out, n_pairs,
        )  # fmt: skip
    return out


def pair_distances_backward(
    positions: torch.Tensor,
    cell: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    shifts: torch.Tensor,
    distances: torch.Tensor,
    grad: torch.Tensor,
    need_positions: bool,
    need_cell: bool,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(∂E/∂positions (N, 3), ∂E/∂cell (3, 3))`` (each None unless needed) from
    ``grad = ∂E/∂distances (P,)``."""
    grad_positions = torch.zeros_like(positions) if need_positions else None
    grad_cell = torch.zeros_like(cell) if need_cell else None
    n_pairs = first.shape[0]
    if n_pairs > 0 and (need_positions or need_cell):
        launch(
            _distances_backward_kernel, n_pairs, defaults.TRITON_PAIRS_PER_PROGRAM,
            positions.device,
            positions.contiguous(), cell.contiguous(), first.contiguous(),
            second.contiguous(), shifts.contiguous(), distances.contiguous(),
            grad.contiguous(),
            positions if grad_positions is None else grad_positions,
            cell if grad_cell is None else grad_cell, n_pairs,
            POSITIONS=need_positions, CELL=need_cell,
        )  # fmt: skip
    return grad_positions, grad_cell


@triton.jit
def _coulomb_kernel(
    charges, first, second, distances, constants, potential, values, derivatives,
    n_pairs, n_channels, FULL: tl.constexpr, VALUES: tl.constexpr,
    DERIVATIVES: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pairs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pairs < n_pairs
    i = tl.load(first + pairs, mask=live, other=0).to(tl.int64) * n_channels
    j = tl.load(second + pairs, mask=live, other=0).to(tl.int64) * n_channels
    r = tl.load(distances + pairs, mask=live, other=1)
    # constants: 1/(√2 σ), A, A √(2/π) / σ (0-dim tensors on the device: no host read)
    scale = tl.load(constants)
    prefactor = tl.load(constants + 1)
    gaussian = tl.load(constants + 2)
    scaled = r * scale
    inverse = 1 / tl.maximum(r, 1e-15)
    if INTERPRETED:
        complement = 1 - tl.math.erf(scaled)
    else:
        complement = _erfc(scaled)
    v = prefactor * complement * inverse
    for channel in range(n_channels):
        q_j = tl.load(charges + j + channel, mask=live, other=0)
        tl.atomic_add(potential + i + channel, 0.5 * q_j * v, mask=live, sem="relaxed")
        if not FULL:
            q_i = tl.load(charges + i + channel, mask=live, other=0)
            contribution = 0.5 * q_i * v
            tl.atomic_add(
                potential + j + channel, contribution, mask=live, sem="relaxed"
            )
    if VALUES:
        tl.store(values + pairs, v, mask=live)
    if DERIVATIVES:
        derivative = -(v + gaussian * tl.exp(-scaled * scaled)) * inverse
        tl.store(derivatives + pairs, derivative, mask=live)


@triton.jit
def _coulomb_backward_kernel(
    grad, charges, first, second, values, derivatives, grad_charges,
    grad_distances, n_pairs, n_channels, FULL: tl.constexpr, CHARGES: tl.constexpr,
    DISTANCES: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pairs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pairs < n_pairs
    i = tl.load(first + pairs, mask=live, other=0).to(tl.int64) * n_channels
    j = tl.load(second + pairs, mask=live, other=0).to(tl.int64) * n_channels
    overlap = tl.zeros((BLOCK,), dtype=grad.dtype.element_ty)
    if CHARGES:
        v = tl.load(values + pairs, mask=live, other=0)
    for channel in range(n_channels):
        g_i = tl.load(grad + i + channel, mask=live, other=0)
        g_j = tl.load(grad + j + channel, mask=live, other=0)
        if DISTANCES:
            overlap += g_i * tl.load(charges + j + channel, mask=live, other=0)
            if not FULL:
                overlap += g_j * tl.load(charges + i + channel, mask=live, other=0)
        if CHARGES:  # the adjoint sends the gradient back along each pair
            target = grad_charges + channel
            tl.atomic_add(target + j, 0.5 * g_i * v, mask=live, sem="relaxed")
            if not FULL:
                tl.atomic_add(target + i, 0.5 * g_j * v, mask=live, sem="relaxed")
    if DISTANCES:
        derivative = tl.load(derivatives + pairs, mask=live, other=0)
        tl.store(grad_distances + pairs, 0.5 * overlap * derivative, mask=live)


def coulomb_pair_sum(
    charges: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    distances: torch.Tensor,
    smearing: torch.Tensor,
    prefactor: torch.Tensor,
    full: bool,
    keep_values: bool,
    keep_derivatives: bool,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(potential (N, C), v (P,), v' (P,))`` of the short-range Coulomb sum
    ``V_i = ½ Σ_j q_j v(r_ij)``, ``v(r) = A erfc(r/√2σ)/r``; ``v`` and ``v'`` only if
    asked for (None otherwise). ``smearing`` and ``prefactor`` are 0-dim tensors."""
    charges = charges.contiguous()
    n_pairs, n_channels = distances.shape[0], charges.shape[1]
    potential = torch.zeros_like(charges)
    values = distances.new_empty(n_pairs) if keep_values else None
    derivatives = distances.new_empty(n_pairs) if keep_derivatives else None
    if n_pairs > 0:
        constants = torch.stack(
            [
                1.0 / (smearing * math.sqrt(2.0)),
                prefactor,
                prefactor * math.sqrt(2.0 / math.pi) / smearing,
            ]
        ).to(distances.dtype)
        launch(
            _coulomb_kernel, n_pairs, defaults.TRITON_PAIRS_PER_PROGRAM,
            distances.device,
            charges, first.contiguous(), second.contiguous(), distances.contiguous(),
            constants, potential, distances if values is None else values,
            distances if derivatives is None else derivatives, n_pairs, n_channels,
            FULL=full, VALUES=keep_values, DERIVATIVES=keep_derivatives,
            INTERPRETED=INTERPRETED,
        )  # fmt: skip
    return potential, values, derivatives


def coulomb_pair_sum_backward(
    grad: torch.Tensor,
    charges: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    values: Optional[torch.Tensor],
    derivatives: Optional[torch.Tensor],
    full: bool,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(∂L/∂charges (N, C), ∂L/∂distances (P,))`` from ``grad = ∂L/∂potential``:
    the charge gradient if ``values`` ``v`` are given, the distance gradient if the
    ``derivatives`` ``v'`` are."""
    grad = grad.contiguous()
    charges = charges.contiguous()
    grad_charges = torch.zeros_like(charges) if values is not None else None
    n_pairs = first.shape[0]
    grad_distances = None
    if derivatives is not None:
        grad_distances = derivatives.new_empty(n_pairs)
    if n_pairs > 0 and (values is not None or derivatives is not None):
        launch(
            _coulomb_backward_kernel, n_pairs, defaults.TRITON_PAIRS_PER_PROGRAM,
            grad.device,
            grad, charges, first.contiguous(), second.contiguous(),
            grad if values is None else values,
            grad if derivatives is None else derivatives,
            grad if grad_charges is None else grad_charges,
            grad if grad_distances is None else grad_distances, n_pairs,
            charges.shape[1], FULL=full, CHARGES=values is not None,
            DISTANCES=derivatives is not None,
        )  # fmt: skip
    return grad_charges, grad_distances
