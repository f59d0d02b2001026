"""Pair distances ``‖r_j − r_i + S A‖`` as one autograd Function.

Written with plain tensor operations, the distances of ``P`` pairs and their
backward pass allocate about ten ``(P, 3)`` tensors (gathers, the shift product,
differences, the norm's backward, the negated scatter source). On CPUs where
fresh memory costs its page faults, those allocations take longer than the
arithmetic. Here the forward builds the pair vectors in place in one buffer (the
first atoms' positions gathered in chunks; for a kept neighbour list, the buffer
of the previous step of a :class:`~torchpme._core.pairlist.PairList` once that
step's backward is done) and keeps it; the
backward scales it once and accumulates it at both ends (for a list used again,
through the sparse incidence a :class:`~torchpme._core.pairlist.PairList` keeps):

.. math::

    \\frac{∂E}{∂\\mathbf r_j} = −\\frac{∂E}{∂\\mathbf r_i} =
    \\frac{∂E}{∂r_{ij}} \\frac{\\mathbf d_{ij}}{r_{ij}}, \\qquad
    \\frac{∂E}{∂A} = Σ_{ij} \\mathbf S_{ij}^\\top \\frac{∂E}{∂r_{ij}}
    \\frac{\\mathbf d_{ij}}{r_{ij}},

with the derivative of the norm taken as 0 at ``r = 0``. Second derivatives run
the composed form inside the backward pass.
"""

from typing import Optional

import torch

from . import defaults, execution
from .backward import replay
from .execution import chunk_length, traced
from .pairlist import PairEnds, PairList, index_columns

__all__ = ["accumulate_at_ends", "add_at_ends_atomically", "pair_distances"]


def accumulate_at_ends(
    rows: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    n_atoms: int,
    ends: Optional[PairEnds] = None,
) -> torch.Tensor:
    """``(N, k)``: each pair's row added at its second atom and subtracted at its
    first (``rows`` ``(P, k)``, overwritten). Through ``ends`` when given."""
    if ends is not None and ends.n_pairs == rows.shape[0] and rows.dim() == 2:
        return ends.accumulate(rows)
    result = torch.zeros((n_atoms, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    if rows.device.type != "cpu":
        return add_at_ends_atomically(result, rows, first, second)
    result.index_put_((second,), rows, accumulate=True)
    return result.index_put_((first,), rows.neg_(), accumulate=True)


def add_at_ends_atomically(
    result: torch.Tensor, rows: torch.Tensor, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """:func:`accumulate_at_ends` off the CPU, into ``result``: ``index_add_`` adds
    with atomics there, where an accumulating ``index_put_`` sorts the indices
    first (several times slower)."""
    result.index_add_(0, second, rows)
    return result.index_add_(0, first, rows, alpha=-1.0)


def _vectors(positions, cell, first, second, shifts) -> torch.Tensor:
    """``r_j − r_i + S A`` ``(P, 3)``, built in place in one fresh buffer."""
    vectors = positions.index_select(0, second)
    vectors.sub_(positions.index_select(0, first))
    return vectors.addmm_(shifts, cell)


def _vectors_and_distances(positions, cell, first, second, shifts, vectors):
    """``(P, 3)`` vectors (into ``vectors``) and ``(P,)`` distances, with no
    pair-sized temporary: the first atoms' positions are gathered in chunks that
    the allocator reuses."""
    torch.index_select(positions, 0, second, out=vectors)
    distances = vectors.new_empty(vectors.shape[0])
    step = chunk_length(defaults.PAIRS, vectors.shape[0], vectors.device)
    for start in range(0, vectors.shape[0], step):
        part = vectors[start : start + step]
        part.sub_(positions.index_select(0, first[start : start + step]))
        part.addmm_(shifts[start : start + step], cell)
        torch.linalg.vector_norm(part, dim=-1, out=distances[start : start + step])
    return vectors, distances


def _distances_from_ops(positions, cell, first, second, shifts):
    """The distances as differentiable operations (second derivatives, scripting)."""
    return torch.linalg.vector_norm(
        _vectors(positions, cell, first, second, shifts), dim=-1
    )


class _PairDistances(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, cell, first, second, shifts, pairs):
        kernels = execution.kernels_for(positions)
        ctx.kernels = kernels
        if kernels is not None:
            # fused: the pair vectors are recomputed in the backward, not stored
            distances = kernels.pair_distances(positions, cell, first, second, shifts)
            ctx.save_for_backward(positions, cell, first, second, shifts, distances)
            ctx.vectors = ctx.ends = None
            return distances
        shifts = shifts.to(positions.dtype)
        # the buffer of the previous step when the list is kept and it is free
        if pairs is None:
            rows = positions.new_empty((first.shape[0], 3))
        else:
            rows = pairs.pair_rows(positions.dtype, ctx)
        # detached: torch.compile in PyTorch 2.5 traces this forward with gradients
        # on, where out= writes from inputs that require grad raise "functions with
        # out=... arguments don't support automatic differentiation" (no upstream
        # issue found; 2.13 traces it as eager mode runs it, without gradients);
        # tests/test_distances.py runs the forward with gradients on
        vectors, distances = _vectors_and_distances(
            positions.detach(), cell.detach(), first, second, shifts, rows
        )
        ends = None
        if pairs is not None and positions.requires_grad:
            ends = pairs.pair_ends(positions.shape[0])
        # the output is saved, not stored on ctx: ctx → output → grad_fn = ctx
        # would be a reference cycle, freed only by the garbage collector
        ctx.save_for_backward(positions, cell, first, second, shifts, distances)
        ctx.vectors, ctx.ends = vectors, ends
        return distances

    @staticmethod
    def backward(ctx, grad):
        positions, cell, first, second, shifts, distances = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if ctx.kernels is not None and not torch.is_grad_enabled():
            grad_positions, grad_cell = ctx.kernels.pair_distances_backward(
                positions, cell, first, second, shifts, distances, grad, needs[0],
                needs[1],
            )  # fmt: skip
            return grad_positions, grad_cell, None, None, None, None
        shifts = shifts.to(positions.dtype)  # integers for the fused kernels
        if torch.is_grad_enabled():  # second derivatives
            # int64 columns: the backward of the composed gathers adds rows by
            # index, which on CPU is several times slower with int32 indices
            output = _distances_from_ops(
                positions, cell, first.long(), second.long(), shifts
            )
            inputs = [positions, cell, None, None, None, None]
            return replay(output, inputs, needs, grad)
        vectors = ctx.vectors
        if vectors is None:  # a second backward (retain_graph): rebuild the buffer
            vectors = _vectors(positions, cell, first, second, shifts)
        # the buffer becomes the scaled pulls: consumed (a second backward rebuilds
        # it), and busy until this pass returns (no other step may claim it)
        ctx.vectors, ctx.busy = None, vectors
        scale = (grad / distances).masked_fill_(distances == 0, 0.0)
        pulls = vectors.mul_(scale.unsqueeze(-1))
        grad_positions = grad_cell = None
        if needs[1]:
            grad_cell = shifts.t() @ pulls
        if needs[0]:
            grad_positions = accumulate_at_ends(
                pulls, first, second, positions.shape[0], ctx.ends
            )
        ctx.busy = None
        return grad_positions, grad_cell, None, None, None, None


def pair_distances(
    positions: torch.Tensor,
    cell: torch.Tensor,
    neighbor_indices: torch.Tensor,
    shifts: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Differentiable pair distances ``‖r_j − r_i + S A‖``.

    Args:
        positions: ``(N, 3)``.
        cell: ``(3, 3)``, rows are lattice vectors.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``, or a
            :class:`~torchpme.neighbors.PairList` (which holds the shifts, and whose
            work buffer and pair incidence then serve every step).
        shifts: ``(P, 3)`` integer (or float) cell shifts; ``None`` with a
            ``PairList``.

    Returns:
        ``(P,)`` distances in the dtype of ``positions``, with (twice
        differentiable) gradients flowing to ``positions`` and ``cell``.
    """
    if torch.jit.is_scripting():
        if shifts is None:
            raise ValueError("pair_distances needs `shifts` for a tensor of indices")
        first, second = neighbor_indices[:, 0], neighbor_indices[:, 1]
        return _distances_from_ops(
            positions, cell, first, second, shifts.to(positions.dtype)
        )
    return _distances_by_function(positions, cell, neighbor_indices, shifts)


def _distances_by_function(positions, cell, neighbor_indices, shifts) -> torch.Tensor:
    pairs = None
    if isinstance(neighbor_indices, PairList):
        if shifts is not None:
            raise ValueError(
                "pair_distances takes the shifts of a PairList from the list: "
                "pass `shifts=None`"
            )
        pairs, shifts = neighbor_indices, neighbor_indices.shifts
        first, second = pairs.first, pairs.second
    elif shifts is None:
        raise ValueError("pair_distances needs `shifts` for a tensor of indices")
    else:
        first, second = index_columns(neighbor_indices)
    if traced(positions) or first.device.type != "cpu":
        # its columns only: a buffer handed between steps has no place in a
        # traced graph, and on accelerators fresh memory costs no page faults
        pairs = None
    # converted inside: the fused kernels read integer shifts as they are
    return _PairDistances.apply(
        positions, cell.to(positions.dtype), first, second, shifts, pairs
    )
