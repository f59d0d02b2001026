"""The smeared Coulomb kernel ``A 4π e^{−σ²k²/2}/k²``: values against the formula,
first and second derivatives in ``k²``, ``σ`` and ``A`` (including ``k = 0``), and
the same results under TorchScript and ``torch.func``."""

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torchpme import CoulombPotential
from torchpme._core.coulomb_kernel import coulomb_kernel

F64 = torch.float64


def _inputs(with_zero=True):
    values = [0.0, 1e-3, 0.1, 0.7, 2.0, 7.0] if with_zero else [1e-3, 0.1, 0.7, 2.0]
    k_sq = torch.tensor(values, dtype=F64, requires_grad=True)
    smearing = torch.tensor(0.8, dtype=F64, requires_grad=True)
    prefactor = torch.tensor(1.7, dtype=F64, requires_grad=True)
    return k_sq, smearing, prefactor


def _formula(k, sigma, a):
    return 0.0 if k == 0 else a * 4 * math.pi * math.exp(-(sigma**2) * k / 2) / k


def test_values_and_first_derivatives_match_the_formula():
    k_sq, smearing, prefactor = _inputs()
    kernel = coulomb_kernel(k_sq, smearing, prefactor)
    expected = [_formula(k, 0.8, 1.7) for k in k_sq.tolist()]
    torch.testing.assert_close(
        kernel, torch.tensor(expected, dtype=F64), rtol=1e-14, atol=0
    )
    weights = torch.linspace(0.5, 1.5, len(expected), dtype=F64)
    grads = torch.autograd.grad((weights * kernel).sum(), [k_sq, smearing, prefactor])
    # analytic: ∂G/∂k² = −G (σ²/2 + 1/k²), ∂G/∂σ = −σ k² G, ∂G/∂A = G/A; 0 at k = 0
    g = torch.tensor(expected, dtype=F64)
    k = k_sq.detach()
    inverse = torch.where(k > 0, 1 / k.clamp(min=1e-300), torch.zeros_like(k))
    torch.testing.assert_close(
        grads[0], -weights * g * (0.32 + inverse), rtol=1e-13, atol=0
    )
    torch.testing.assert_close(
        grads[1], -(weights * 0.8 * k * g).sum(), rtol=1e-13, atol=0
    )
    torch.testing.assert_close(grads[2], (weights * g / 1.7).sum(), rtol=1e-13, atol=0)


def test_gradcheck_and_gradgradcheck():
    # away from k = 0 (the kernel is not differentiable there; it is masked)
    inputs = _inputs(with_zero=False)
    assert gradcheck(coulomb_kernel, inputs)
    assert gradgradcheck(coulomb_kernel, inputs)


def test_second_derivatives_finite_at_k_zero():
    k_sq, smearing, prefactor = _inputs()
    kernel = coulomb_kernel(k_sq, smearing, prefactor)
    (first,) = torch.autograd.grad(kernel.sum(), k_sq, create_graph=True)
    assert first[0].item() == 0.0
    (second,) = torch.autograd.grad(first.sum(), smearing)
    assert torch.isfinite(second)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_without_gradients_equal_with(dtype):
    k_sq, smearing, prefactor = _inputs()
    with torch.no_grad():
        plain = coulomb_kernel(k_sq.to(dtype), smearing, prefactor)
    tracked = coulomb_kernel(k_sq.to(dtype), smearing, prefactor)
    assert tracked.requires_grad and not plain.requires_grad
    torch.testing.assert_close(plain, tracked.detach(), rtol=0, atol=0)
    assert plain.dtype == dtype


def test_torchscript_and_vmap_paths_agree():
    potential = CoulombPotential(smearing=0.8)
    scripted = torch.jit.script(potential)
    k_sq = torch.tensor([[0.0, 0.3, 1.1], [0.2, 0.0, 4.0]], dtype=F64)
    eager_k = k_sq.clone().requires_grad_(True)
    script_k = k_sq.clone().requires_grad_(True)
    eager = potential.lr_from_k_sq(eager_k)
    script = scripted.lr_from_k_sq(script_k)
    torch.testing.assert_close(script, eager, rtol=1e-15, atol=0)
    (g_eager,) = torch.autograd.grad(eager.sum(), eager_k)
    (g_script,) = torch.autograd.grad(script.sum(), script_k)
    torch.testing.assert_close(g_script, g_eager, rtol=1e-14, atol=0)
    # torch.func: a per-row gradient through the vmap-compatible path
    rows = torch.func.vmap(torch.func.grad(lambda k: potential.lr_from_k_sq(k).sum()))(
        k_sq
    )
    torch.testing.assert_close(rows, g_eager, rtol=1e-14, atol=0)
