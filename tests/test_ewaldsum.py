"""The fused Ewald k-sum (``torchpme._core.ewaldsum``): its values and every
gradient (positions, charges, k-vectors, kernel), first and second order, against
the composed operations; and ``ewald_sum`` in many chunks either way."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torchpme._core import pairs
from torchpme._core.ewaldsum import composed_sum, ewald_charge_sum


def _inputs(n_atoms=5, n_k=7, channels=2, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape, scale=1.0):
        values = scale * torch.randn(*shape, dtype=torch.float64, generator=generator)
        return values.requires_grad_(True)

    return (
        draw(n_atoms, 3, scale=2.0),
        draw(n_atoms, channels),
        draw(n_k, 3),
        draw(n_k),
    )


def fused(*inputs, chunk=3):
    return ewald_charge_sum(*inputs, chunk)


def composed(*inputs, chunk=3):
    return composed_sum(*inputs, chunk)


def test_values_match_the_composed_sum():
    inputs = _inputs()
    torch.testing.assert_close(fused(*inputs), composed(*inputs))


def test_gradients_of_every_input_match_the_composed_sum():
    inputs = _inputs(seed=1)
    weights = torch.randn(5, 2, dtype=torch.float64)  # not proportional to charges
    ours = torch.autograd.grad((weights * fused(*inputs)).sum(), inputs)
    plain = torch.autograd.grad((weights * composed(*inputs)).sum(), inputs)
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck_first_and_second_order():
    inputs = _inputs(n_atoms=4, n_k=5, seed=2)
    assert gradcheck(fused, inputs)
    assert gradgradcheck(fused, inputs)


@pytest.mark.parametrize("fused", [True, False])
def test_many_chunks_equal_one(monkeypatch, fused):
    """Chunks of 2 k-vectors (fused: nothing kept but the structure factors;
    composed: each chunk checkpointed) give the one-chunk values and gradients,
    also when charges, k-vectors and kernel need gradients."""
    if not fused:
        monkeypatch.setattr(pairs, "_fused", lambda values, dipolar: False)
    inputs = _inputs(n_atoms=6, n_k=9, seed=3)
    weights = torch.randn(6, 2, dtype=torch.float64)

    def run(chunk):
        value = (weights * pairs.ewald_sum(*inputs, chunk_size=chunk)).sum()
        return [value.detach(), *torch.autograd.grad(value, inputs)]

    for a, b in zip(run(2), run(100), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
