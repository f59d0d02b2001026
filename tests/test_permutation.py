"""Rows reordered by a permutation (the mesh plan's atom order): values, gradients
of first and second order, and backward passes made of gathers only."""

import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from torchpme._core.permutation import inverse_permutation, permute_rows


def _case(n=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    rows = torch.randn(n, 3, dtype=torch.float64, generator=generator)
    return rows.requires_grad_(True), order


def test_inverse_undoes_the_permutation():
    _, order = _case()
    inverse = inverse_permutation(order)
    assert torch.equal(order[inverse], torch.arange(len(order)))
    assert torch.equal(inverse[order], torch.arange(len(order)))


def test_values_and_gradients():
    rows, order = _case()
    assert torch.equal(permute_rows(rows, order), rows[order])

    def function(x):
        return permute_rows(x, order) ** 3

    assert gradcheck(function, (rows,))
    assert gradgradcheck(function, (rows,))


class _Scatters(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name.startswith(("index_add", "index_put", "_index_put", "scatter")):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def test_backward_gathers_without_scatter_adds():
    """The adjoint of a permutation is the inverse permutation: a gather (after an
    integer ``index_copy_`` making the inverse), no scatter-add (atomics on
    accelerators, whose generated code inductor has got wrong)."""
    rows, order = _case()
    inverse = inverse_permutation(order)
    weights = torch.randn(rows.shape, dtype=rows.dtype)
    out = (permute_rows(rows, order) * weights).sum()
    with _Scatters() as mode:
        (grad,) = torch.autograd.grad(out, rows)
    assert mode.seen == []
    torch.testing.assert_close(grad, weights[inverse])
