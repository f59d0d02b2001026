"""One-dimensional interpolation weights: values against their definitions (evaluated
here independently, in NumPy), derivatives of first and second order, and a backward
pass that keeps only the offsets."""

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torchpme._core.weights import coefficient_table, evaluate_weights

ORDERS = range(1, 8)


def lagrange(x: np.ndarray, n: int) -> np.ndarray:
    """``w_j(x) = Π_{m≠j} (x − o_m)/(o_j − o_m)`` with nodes ``o_j = j − (n−1)/2``."""
    nodes = np.arange(n) - (n - 1) / 2
    out = np.ones(x.shape + (n,))
    for j in range(n):
        for m in range(n):
            if m != j:
                out[..., j] *= (x - nodes[m]) / (nodes[j] - nodes[m])
    return out


def bspline(x: np.ndarray, n: int) -> np.ndarray:
    """``w_j(x) = M_n(o_j − x)``, the centred cardinal B-spline of order ``n``:
    ``M_n(t) = 1/(n−1)! Σ_k (−1)^k C(n, k) (t + n/2 − k)_+^{n−1}``."""
    nodes = np.arange(n) - (n - 1) / 2
    t = nodes - x[..., None]
    total = np.zeros_like(t)
    for k in range(n + 1):
        shifted = t + n / 2 - k
        # (·)_+^{n−1}, with (·)_+^0 the unit step
        power = np.where(shifted > 0, np.abs(shifted) ** (n - 1), 0.0)
        total += (-1) ** k * math.comb(n, k) * power
    return total / math.factorial(n - 1)


REFERENCES = {"Lagrange": lagrange, "P3M": bspline}


def _offsets(shape=(11, 3), seed=0):
    generator = torch.Generator().manual_seed(seed)
    # inside the interval where each weight is one polynomial piece
    return torch.rand(shape, dtype=torch.float64, generator=generator) - 0.5


@pytest.mark.parametrize("method", list(REFERENCES))
@pytest.mark.parametrize("n", ORDERS)
def test_values_match_the_definitions(method, n):
    x = _offsets()
    weights = evaluate_weights(x, coefficient_table(method, n))
    expected = REFERENCES[method](x.numpy(), n)
    # the truncated-power sum of the B-spline cancels up to ~1e-14
    np.testing.assert_allclose(weights.numpy(), expected, rtol=0, atol=1e-13)
    # both families are partitions of unity
    np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, atol=1e-14)


@pytest.mark.parametrize("method", list(REFERENCES))
@pytest.mark.parametrize("n", ORDERS)
def test_first_and_second_derivatives(method, n):
    x = _offsets((5, 3), seed=1).requires_grad_(True)
    table = coefficient_table(method, n)

    def function(offsets):
        return evaluate_weights(offsets, table)

    assert gradcheck(function, (x,))
    assert gradgradcheck(function, (x,))


def test_float32_follows_the_input():
    x = _offsets().to(torch.float32)
    weights = evaluate_weights(x, coefficient_table("P3M", 5))
    assert weights.dtype == torch.float32
    expected = bspline(x.double().numpy(), 5)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=0, atol=1e-6)


def test_backward_keeps_only_the_offsets():
    """Plain autograd through Horner's rule would keep one ``S + (n,)`` tensor per
    step for the backward pass; the weights keep the offsets and the table."""
    x = _offsets((64, 3)).requires_grad_(True)
    table = coefficient_table("P3M", 5)
    weights = evaluate_weights(x, table)
    saved = weights.grad_fn.saved_tensors
    assert sorted(tuple(t.shape) for t in saved) == [(5, 5), (64, 3)]


def test_torchscript_evaluates_the_same_polynomials():
    x = _offsets().requires_grad_(True)
    table = coefficient_table("Lagrange", 4)
    scripted = torch.jit.script(evaluate_weights)
    eager, compiled = evaluate_weights(x, table), scripted(x, table)
    torch.testing.assert_close(compiled, eager, atol=1e-15, rtol=0)
    (g_eager,) = torch.autograd.grad(eager.pow(2).sum(), x)
    (g_script,) = torch.autograd.grad(compiled.pow(2).sum(), x)
    torch.testing.assert_close(g_script, g_eager, atol=1e-14, rtol=0)


def test_calculators_hold_one_scheme_that_follows_the_module():
    """PME interpolates with Lagrange polynomials, P3M with B-splines: each holds
    the scheme built at construction, whose table follows ``.to()`` (it is not a
    buffer) and is the one every plan is made with."""
    import torchpme
    from torchpme._core.weights import coefficient_table

    potential = torchpme.CoulombPotential(smearing=1.0)
    for cls, method in [
        (torchpme.PMECalculator, "Lagrange"),
        (torchpme.P3MCalculator, "P3M"),
    ]:
        calculator = cls(potential, mesh_spacing=0.5, interpolation_nodes=4)
        assert calculator.scheme.method == method
        torch.testing.assert_close(
            calculator.scheme.coefficients.double(), coefficient_table(method, 4)
        )
        single = calculator.to(torch.float32)
        assert single.scheme.coefficients.dtype == torch.float32
        assert single.mesh_interpolator.scheme.coefficients.dtype == torch.float32
        cell = torch.eye(3)
        plan, _, _ = single._mesh_setup(cell, torch.rand(4, 3), None)
        assert plan.scheme is single.scheme
