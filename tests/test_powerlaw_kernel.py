"""The reciprocal-space shape of the ``1/r^p`` kernels, ``f_p(σ²k²/2)`` with
``f_p(x) = Γ(a, x) x^{−a}``: values against the defining integral (SciPy
quadrature), first derivatives against central differences of that integral,
gradcheck/gradgradcheck, the limit at ``k = 0``, and the stress of a 1/r^p PME
calculator unchanged."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from torch.autograd import gradcheck, gradgradcheck

from torchpme import InversePowerLawPotential, PMECalculator
from torchpme._core import powerlaw_kernel
from torchpme._core.powerlaw_kernel import powerlaw_shape

F64 = torch.float64
K_SQ = [0.0, 1e-3, 0.1, 0.7, 2.0, 7.0, 30.0]
SIGMA = 0.8


def integral(p, x):
    """``x^{−a} ∫_x^∞ t^{a−1} e^{−t} dt`` by quadrature."""
    a = (3.0 - p) / 2.0
    value, _ = quad(lambda t: t ** (a - 1.0) * math.exp(-t), x, np.inf, epsabs=0,
                    epsrel=1e-13, limit=200)  # fmt: skip
    return value * x ** (-a)


def expected(p, k_sq, sigma=SIGMA):
    if k_sq == 0:
        return 2.0 / (p - 3.0) if p > 3 else 0.0
    return integral(p, 0.5 * sigma**2 * k_sq)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6])
def test_values_and_derivatives_against_the_integral(p):
    k_sq = torch.tensor(K_SQ, dtype=F64, requires_grad=True)
    sigma = torch.tensor(SIGMA, dtype=F64, requires_grad=True)
    shape = powerlaw_shape(k_sq, sigma, p)
    reference = torch.tensor([expected(p, k) for k in K_SQ], dtype=F64)
    torch.testing.assert_close(shape, reference, rtol=1e-11, atol=1e-14)

    weights = torch.linspace(0.5, 1.5, len(K_SQ), dtype=F64)
    grad_k_sq, grad_sigma = torch.autograd.grad((weights * shape).sum(), [k_sq, sigma])
    h = 1e-5
    numeric_k = [
        0.0 if k == 0 else (expected(p, k * (1 + h)) - expected(p, k * (1 - h))) / (2 * h * k)
        for k in K_SQ
    ]  # fmt: skip
    torch.testing.assert_close(
        grad_k_sq, weights * torch.tensor(numeric_k, dtype=F64), rtol=1e-6, atol=1e-12
    )
    numeric_sigma = sum(
        w * (expected(p, k, SIGMA + h) - expected(p, k, SIGMA - h)) / (2 * h)
        for w, k in zip(weights.tolist(), K_SQ)
    )
    assert math.isclose(grad_sigma.item(), numeric_sigma, rel_tol=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6])
def test_gradcheck_and_gradgradcheck(p):
    # away from k = 0, where the shape jumps to its limit (the mesh's k = 0 term)
    k_sq = torch.tensor(K_SQ[1:], dtype=F64, requires_grad=True)
    sigma = torch.tensor(SIGMA, dtype=F64, requires_grad=True)

    def function(k_sq, sigma):
        return powerlaw_shape(k_sq, sigma, p)

    assert gradcheck(function, (k_sq, sigma))
    assert gradgradcheck(function, (k_sq, sigma))


def test_the_function_serves_differentiable_calls(monkeypatch):
    calls = []
    original = powerlaw_kernel._PowerLawShape.apply
    monkeypatch.setattr(
        powerlaw_kernel._PowerLawShape,
        "apply",
        lambda *a: calls.append(1) or original(*a),
    )
    k_sq = torch.tensor(K_SQ, dtype=F64)
    sigma = torch.tensor(SIGMA, dtype=F64)
    powerlaw_shape(k_sq, sigma, 4)
    assert not calls  # no gradient: plain values
    powerlaw_shape(k_sq.requires_grad_(True), sigma, 4)
    assert calls


@pytest.mark.parametrize("p", [2, 6])
def test_stress_of_a_power_law_pme_equals_the_composed_kernel(p, monkeypatch):
    rng = np.random.default_rng(2)
    cell = torch.tensor(5.0 * np.eye(3) + rng.uniform(-0.4, 0.4, (3, 3)))
    positions = torch.tensor(rng.uniform(0, 1, (12, 3))) @ cell
    charges = torch.tensor(rng.normal(size=(12, 1)))
    calculator = PMECalculator(InversePowerLawPotential(p, smearing=0.9), 0.5, 4)
    pairs = torch.tensor([[i, j] for i in range(12) for j in range(i + 1, 12)])
    shifts = torch.zeros(len(pairs), 3, dtype=F64)

    def stress():
        c = cell.clone().requires_grad_(True)
        pos = positions.clone().requires_grad_(True)
        d = torch.linalg.norm(pos[pairs[:, 1]] - pos[pairs[:, 0]] + shifts @ c, dim=1)
        energy = (charges * calculator(charges, c, pos, pairs, d)).sum()
        return torch.autograd.grad(energy, (pos, c))

    fast = stress()
    monkeypatch.setattr(
        powerlaw_kernel, "_powerlaw_by_function", powerlaw_kernel._powerlaw_from_ops
    )
    for value, reference in zip(fast, stress()):
        torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-13)
