"""Rows reordered by a permutation, differentiated by gathers only.

The mesh plan sorts the atoms by mesh position, so per-atom inputs are reordered by a
permutation ``order`` before spreading. Through plain autograd the backward of
``x.index_select(0, order)`` is a scatter-add: atomic additions on accelerators,
and on CPU a pattern whose vectorised, multithreaded code from inductor applies an
index offset twice (pytorch/pytorch#191837, PyTorch 2.13: wrong forces and a
corrupted heap; ``tests/test_permutation.py`` checks that no scatter runs). For
a permutation the adjoint is the gather by the inverse permutation, which
:func:`permute_rows` uses; its backward is again such a gather, so derivatives of
any order stay gathers.
"""

import torch

__all__ = ["inverse_permutation", "permute_rows"]


def inverse_permutation(order: torch.Tensor) -> torch.Tensor:
    """``inverse`` with ``inverse[order[i]] = i`` for a permutation ``order``."""
    positions = torch.arange(order.shape[0], dtype=order.dtype, device=order.device)
    return torch.empty_like(order).index_copy_(0, order, positions)


class _PermuteRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, order):
        ctx.save_for_backward(order)
        return rows.index_select(0, order)

    @staticmethod
    def backward(ctx, grad):
        (order,) = ctx.saved_tensors
        return _PermuteRows.apply(grad, inverse_permutation(order)), None


def permute_rows(rows: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``rows[order]`` for a permutation ``order``; its gradient is
    ``grad[inverse]`` (see :func:`inverse_permutation`)."""
    if torch.jit.is_scripting():
        return rows.index_select(0, order)
    return _permute(rows, order)


@torch.jit.unused
def _permute(rows: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return _PermuteRows.apply(rows, order)
