"""The three communications of one system split over processes, as autograd maps.

Atoms are *partitioned* (each rank holds its own) and the cell, the mesh size
and the energy are *replicated* (every rank holds the same value). Gradients
follow one rule: the objective is one number for the whole system, so

* :func:`exchange_rows` (rows sent to other ranks, ``all_to_all``) is a linear
  map whose adjoint is the same exchange run backwards: the gradient of a row
  goes home to the rank that sent it;
* :func:`total` (a sum over ranks whose result every rank holds) hands each rank
  the gradient of the replicated result unchanged: every rank computes the same
  loss from it, which counts once;
* :func:`replicated` (a replicated input, e.g. the cell, used by every rank's
  own share of the work) sums the gradients of the shares over the ranks.

With these three, ``energy.backward()`` on every rank gives each rank the exact
forces on its atoms and the whole stress, as one process would. Every rank must
run the same calls in the same order, backward passes included: collectives
wait for all ranks.

Without an initialised process group (or ``group`` of one rank) every map is
the identity, so the distributed code runs, and is tested, in one process.
"""

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = [
    "exchange_rows",
    "gather_vectors",
    "raise_everywhere",
    "rank_and_size",
    "replicated",
    "total",
]


def rank_and_size(group: Optional[object]) -> Tuple[int, int]:
    """``(rank, size)`` of this process in ``group`` (the default group when
    ``None``); ``(0, 1)`` when no process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _all_to_all(
    x: torch.Tensor, send: List[int], receive: List[int], group: Optional[object]
) -> torch.Tensor:
    out = x.new_empty((sum(receive),) + tuple(x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), receive, send, group=group)
    return out


class _ExchangeRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, send: List[int], receive: List[int], group):
        ctx.counts = (send, receive)
        ctx.group = group
        return _all_to_all(x, send, receive, group)

    @staticmethod
    def backward(ctx, grad):
        send, receive = ctx.counts
        # the adjoint of a permutation of rows between ranks is its inverse;
        # written with this Function, so that it has a derivative too
        return _ExchangeRows.apply(grad, receive, send, ctx.group), None, None, None


def exchange_rows(
    x: torch.Tensor, send: List[int], receive: List[int], group: Optional[object]
) -> torch.Tensor:
    """Send consecutive rows of ``x`` to each rank, receive theirs.

    Args:
        x: ``(sum(send), ...)`` rows grouped by destination rank, in rank order.
        send: rows for each rank.
        receive: rows from each rank (what they send here).
        group: the process group (``None``: the default one).

    Returns:
        ``(sum(receive), ...)`` rows grouped by source rank, in rank order.
        Differentiable to any order (the adjoint sends gradients home); ``x``
        itself in a group of one.
    """
    if rank_and_size(group)[1] == 1:
        return x
    return _ExchangeRows.apply(x, send, receive, group)


class _Total(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        out = x.clone()
        if rank_and_size(group)[1] > 1:
            dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _Replicated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return _Total.apply(grad, ctx.group), None


def total(x: torch.Tensor, group: Optional[object] = None) -> torch.Tensor:
    """The sum of ``x`` over the ranks, held by every rank.

    Its gradient is the replicated result's gradient, unchanged: use it for a
    value from which every rank computes the same loss (the energy).
    """
    return _Total.apply(x, group)


def replicated(x: torch.Tensor, group: Optional[object] = None) -> torch.Tensor:
    """``x`` unchanged, with its gradient summed over the ranks.

    Wrap a value that every rank holds (the cell, a shared parameter) before each
    rank uses it for its own share of the work: the gradient of ``x`` is then the
    whole one, on every rank (the stress from the cell's gradient).
    """
    return _Replicated.apply(x, group)


def gather_vectors(x: torch.Tensor, group: Optional[object]) -> torch.Tensor:
    """``(size, K)``: the 1-D float64 ``x`` of every rank (same length on all;
    no gradient)."""
    _, size = rank_and_size(group)
    if size == 1:
        return x.unsqueeze(0)
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.stack(parts)


def raise_everywhere(
    failed: torch.Tensor, failure: Optional[Exception], group: Optional[object]
) -> None:
    """Raise on every rank if any rank failed (``failed``: one flag per rank, as
    gathered), so that no rank waits for a collective the others never reach:
    the failing rank re-raises its error, the others a ``ValueError`` quoting it.
    """
    if failure is not None and rank_and_size(group)[1] == 1:
        raise failure
    bad = [rank for rank, flag in enumerate(failed.tolist()) if flag != 0.0]
    if not bad:
        return
    texts: List[Optional[str]] = [None] * len(failed)
    text = None if failure is None else f"{type(failure).__name__}: {failure}"
    dist.all_gather_object(texts, text, group=group)
    if failure is not None:
        raise failure
    raise ValueError(
        f"rank {bad[0]} of the process group refused its inputs: {texts[bad[0]]}"
    )
