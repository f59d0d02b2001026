"""Sums over neighbour pairs and over k-vectors: pure functions for calculators."""

import torch
import torch.utils.checkpoint

from . import defaults
from .ewaldsum import composed_chunk, ewald_charge_sum, phases
from .execution import traced

__all__ = ["dipole_pair_sum", "ewald_sum", "neutralised_corrections", "pair_sum"]


def pair_sum(
    charges: torch.Tensor,
    neighbor_indices: torch.Tensor,
    pair_values: torch.Tensor,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """Per-atom potential of pair interactions, with the ½ of the energy convention.

    ``V_i = ½ Σ_j q_j v_ij``. With a half list each stored pair ``(i, j)`` is added to
    both atoms; with a full list each ordered pair is added to its first atom only.

    Args:
        charges: ``(N, C)``.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``.
        pair_values: ``(P,)`` pair potential ``v_ij``.
        full_neighbor_list: whether every pair appears as ``(i, j)`` and ``(j, i)``.

    Returns:
        ``(N, C)`` potential.
    """
    first = neighbor_indices[:, 0]
    second = neighbor_indices[:, 1]
    values = pair_values.unsqueeze(-1)
    potential = torch.zeros_like(charges)
    potential = potential.index_add(0, first, charges.index_select(0, second) * values)
    if not full_neighbor_list:
        potential = potential.index_add(
            0, second, charges.index_select(0, first) * values
        )
    return potential / 2.0


def wrap_positions(positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Positions moved into the cell by whole lattice vectors, ``r − ⌊r·cell⁻¹⌋·cell``.

    Phases ``k·r`` of atoms far from the origin lose digits (float32 above all); a
    periodic sum is unchanged by lattice shifts, and so are its derivatives with
    respect to positions and cell (the integer shifts carry no gradient).
    """
    shifts = torch.floor(positions.detach() @ torch.linalg.inv_ex(cell.detach())[0])
    return positions - shifts @ cell


def chunk_size(n_atoms: int) -> int:
    """k-vectors per chunk so that one ``(K_chunk, N)`` block has about
    :data:`~torchpme._core.defaults.EWALD_ENTRIES` entries: bounds the memory of
    Ewald sums for any K."""
    return max(1, defaults.EWALD_ENTRIES // max(1, n_atoms))


def _dipole_chunk(
    positions: torch.Tensor,
    dipoles: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
) -> torch.Tensor:
    cos, sin = phases(positions, kvectors)
    projected = kvectors @ dipoles.t()
    amplitude = kernel.unsqueeze(-1) * (
        cos * torch.sum(projected * cos, dim=1, keepdim=True)
        + sin * torch.sum(projected * sin, dim=1, keepdim=True)
    )
    return amplitude.t() @ kvectors


def _fused(values: torch.Tensor, dipolar: bool) -> bool:
    """Whether a chunk of charges goes through the fused Function (eager mode;
    TorchScript, ``torch.compile`` and ``torch.func`` transforms take the composed
    operations)."""
    if dipolar or torch.jit.is_scripting():
        return False
    return not traced(values)


def _chunk(
    positions: torch.Tensor,
    values: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
    dipolar: bool,
) -> torch.Tensor:
    if dipolar:
        return _dipole_chunk(positions, values, kvectors, kernel)
    return composed_chunk(positions, values, kvectors, kernel)


@torch.jit.unused
def _fused_sum(positions, charges, kvectors, kernel, chunk: int) -> torch.Tensor:
    return ewald_charge_sum(positions, charges, kvectors, kernel, chunk)


def ewald_sum(
    positions: torch.Tensor,
    charges: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
    chunk_size: int,
    dipolar: bool = False,
) -> torch.Tensor:
    """Reciprocal-space sum over k-vectors (no 1/V), of charges or of dipoles.

    Charges: ``φ_i = Σ_k G_k Σ_j q_j cos(k·(r_i − r_j))``, through the structure
    factors ``S(k) = Σ_j q_j e^{−i k·r_j}``. Dipoles (``dipolar=True``): the field-like
    ``φ_i = Σ_k G_k k Σ_j (μ_j·k) cos(k·(r_i − r_j))``, the k-space part of
    ``−∇_i Σ_j (μ_j·∇_j)`` of the kernel. Computed in chunks of ``chunk_size``
    k-vectors, so no ``(K, N)`` intermediate for the whole k-set is ever held,
    forward or backward: charges through :mod:`torchpme._core.ewaldsum` (which
    keeps only the structure factors), otherwise, when there is more than one chunk
    and gradients are recorded, each chunk checkpointed (recomputed backward).

    Args:
        positions: ``(N, 3)``.
        charges: ``(N, C)`` charges, or ``(N, 3)`` dipoles.
        kvectors: ``(K, 3)``.
        kernel: ``(K,)`` values ``G_k``.
        chunk_size: k-vectors per chunk.
        dipolar: whether ``charges`` are dipoles.

    Returns:
        ``(N, C)`` (``(N, 3)`` for dipoles).
    """
    if _fused(charges, dipolar):
        return _fused_sum(positions, charges, kvectors, kernel, chunk_size)
    n_k = kvectors.shape[0]
    if n_k <= chunk_size:
        return _chunk(positions, charges, kvectors, kernel, dipolar)
    potential = torch.zeros_like(charges)
    for start in range(0, n_k, chunk_size):
        k = kvectors[start : start + chunk_size]
        g = kernel[start : start + chunk_size]
        if not torch.jit.is_scripting() and torch.is_grad_enabled():
            part = torch.utils.checkpoint.checkpoint(
                _chunk, positions, charges, k, g, dipolar, use_reentrant=False
            )
        else:
            part = _chunk(positions, charges, k, g, dipolar)
        potential = potential + part
    return potential


def neutralised_corrections(
    potential: torch.Tensor,
    charges: torch.Tensor,
    volume: torch.Tensor,
    self_term: torch.Tensor,
    background: torch.Tensor,
    total_charge: torch.Tensor,
) -> torch.Tensor:
    """Remove each atom's self interaction and add the neutralising background.

    ``φ_i − q_i · self − 2 · background · Q / V`` with the total charge ``Q`` per
    channel (the factor 2 compensates the final halving of the k-space potential).

    Args:
        potential, charges: ``(N, C)``.
        volume: cell volume, a scalar or ``(N, 1)`` (each atom's system).
        self_term, background: the potential's scalar terms.
        total_charge: ``(C,)``, or ``(N, C)`` (each atom's system).
    """
    return potential - charges * self_term - 2.0 * background * total_charge / volume


def dipole_pair_sum(
    dipoles: torch.Tensor,
    neighbor_indices: torch.Tensor,
    pair_tensors: torch.Tensor,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """Per-atom field-like potential of dipole pairs: ``V_i = ½ Σ_j T_ij μ_j``.

    Args:
        dipoles: ``(N, 3)``.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``.
        pair_tensors: ``(P, 3, 3)`` interaction tensors ``T_ij`` (symmetric).
        full_neighbor_list: whether every pair appears in both orders.

    Returns:
        ``(N, 3)``.
    """
    first = neighbor_indices[:, 0]
    second = neighbor_indices[:, 1]
    potential = torch.zeros_like(dipoles)
    contribution = torch.bmm(
        pair_tensors, dipoles.index_select(0, second).unsqueeze(-1)
    ).squeeze(-1)
    potential = potential.index_add(0, first, contribution)
    if not full_neighbor_list:
        contribution = torch.bmm(
            pair_tensors, dipoles.index_select(0, first).unsqueeze(-1)
        ).squeeze(-1)
        potential = potential.index_add(0, second, contribution)
    return potential / 2.0
