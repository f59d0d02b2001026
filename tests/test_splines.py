"""torchpme.lib.splines against SciPy's natural splines, convergence rates,
numerical quadrature of the radial Fourier transform and the specification's
reference numbers."""

import itertools
import math
import sys

import numpy as np
import pytest
import scipy.integrate
import scipy.interpolate
import torch

from torchpme.lib.splines import (
    CubicSpline,
    CubicSplineReciprocal,
    compute_second_derivatives,
    compute_spline_ft,
)

F64 = torch.float64


def _grid(n=15):
    """Uneven knots on [0.5, 6] and a smooth decaying function."""
    x = np.sort(
        np.concatenate([[0.5, 6.0], np.random.default_rng(0).uniform(0.5, 6, n)])
    )
    return x, np.exp(-x) * np.cos(x)


def test_second_derivatives_match_scipy_natural_spline():
    x, y = _grid()
    reference = scipy.interpolate.CubicSpline(x, y, bc_type="natural")(x, 2)
    value = compute_second_derivatives(torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(value.numpy(), reference, rtol=1e-10, atol=1e-12)


def test_second_derivatives_two_points_are_zero():
    value = compute_second_derivatives(
        torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([1.0, 3.0], dtype=F64)
    )
    assert value.tolist() == [0.0, 0.0]


def test_cubic_spline_matches_scipy_including_extrapolation():
    x, y = _grid()
    points = np.linspace(0.0, 7.0, 301)
    reference = scipy.interpolate.CubicSpline(x, y, bc_type="natural")(points)
    spline = CubicSpline(torch.tensor(x), torch.tensor(y))
    value = spline(torch.tensor(points))
    # (SciPy's own rounding, ~1e-13 in M_0, is amplified by the extrapolation)
    np.testing.assert_allclose(value.numpy(), reference, rtol=1e-10, atol=1e-14)
    # any input shape
    assert spline(torch.tensor(points).reshape(7, 43)).shape == (7, 43)


def test_cubic_spline_converges_at_fourth_order():
    # sin'' vanishes at both ends, so the natural end conditions are exact
    errors = []
    for n in (11, 21, 41, 81):
        x = torch.linspace(0.0, math.pi, n, dtype=F64)
        spline = CubicSpline(x, torch.sin(x))
        points = torch.linspace(0.0, math.pi, 2001, dtype=F64)
        errors.append(torch.max(torch.abs(spline(points) - torch.sin(points))).item())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 3.8), orders


def test_cubic_spline_gradients():
    x = torch.linspace(0.0, 3.0, 8, dtype=F64)
    y = torch.cos(x).requires_grad_(True)
    points = torch.tensor([0.1, 1.3, 2.9], dtype=F64, requires_grad=True)

    def evaluate(y, points):
        return CubicSpline(x, y)(points)

    assert torch.autograd.gradcheck(evaluate, (y, points))
    assert torch.autograd.gradgradcheck(evaluate, (y, points))


def test_reciprocal_spline_matches_scipy_on_the_inverse_axis():
    x = torch.linspace(1.0, 10.0, 20, dtype=F64)
    y = 1.0 / x + torch.exp(-x)
    spline = CubicSplineReciprocal(x, y, y_at_zero=torch.tensor(2.5, dtype=F64))
    inverse = np.concatenate([[0.0], (1.0 / x.numpy())[::-1]])
    far = scipy.interpolate.CubicSpline(
        inverse, np.concatenate([[0.0], y.numpy()[::-1]]), bc_type="natural"
    )
    near = scipy.interpolate.CubicSpline(
        [0.0, 1.0, x[1].item()], [2.5, y[0].item(), y[1].item()], bc_type="natural"
    )
    points = np.array([0.0, 0.3, 0.99, 1.0, 2.2, 7.7, 10.0, 50.0, 1e6])
    expected = np.where(points < 1.0, near(points), far(1.0 / np.maximum(points, 1.0)))
    np.testing.assert_allclose(
        spline(torch.tensor(points)).numpy(), expected, rtol=1e-12, atol=1e-15
    )
    # default value at zero: the first tabulated value
    default = CubicSplineReciprocal(x, y)
    assert default(torch.tensor([0.0], dtype=F64)).item() == pytest.approx(y[0].item())


def test_reciprocal_spline_interpolates_power_laws():
    x = torch.logspace(0, 2, 60, dtype=F64)
    inside = torch.logspace(0, 2, 300, dtype=F64)
    spline = CubicSplineReciprocal(x, 1.0 / x**2)
    relative = spline(inside) * inside**2 - 1.0
    assert torch.max(torch.abs(relative)) < 1e-3  # natural end at x_0: O(h²)
    # 1/x is linear on the reciprocal axis: reproduced exactly, also beyond the grid
    spline = CubicSplineReciprocal(x, 1.0 / x)
    beyond = torch.logspace(0, 4, 300, dtype=F64)
    torch.testing.assert_close(spline(beyond) * beyond, torch.ones_like(beyond))


@pytest.mark.parametrize("reciprocal", [False, True], ids=["direct", "reciprocal"])
def test_splines_are_buffers_and_script(reciprocal):
    x = torch.linspace(1.0, 4.0, 7, dtype=F64)
    spline = (CubicSplineReciprocal if reciprocal else CubicSpline)(x, torch.exp(-x))
    points = torch.tensor([0.5, 1.5, 3.3, 9.0], dtype=F64)
    assert torch.equal(torch.jit.script(spline)(points), spline(points))
    # buffers follow .to() but stay out of the state dict, as in torch-pme
    assert any(name.endswith("d2y_points") for name, _ in spline.named_buffers())
    assert not spline.state_dict()
    spline32 = spline.to(torch.float32)
    assert all(b.dtype == torch.float32 for b in spline32.buffers())
    value = spline32(points.float())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, spline(points).float())


def _spline_transform_by_quadrature(x, y, k):
    """4π ∫ r S(r) sin(kr)/k dr of the natural spline plus its 1/r-spline tail."""
    spline = scipy.interpolate.CubicSpline(x, y, bc_type="natural")
    r0 = x[-1]
    # the tail: the natural spline through (0, 0), (1/r0, y0), (1/x_{n-2}, y_{n-2})
    tail = scipy.interpolate.CubicSpline(
        [0.0, 1.0 / r0, 1.0 / x[-2]], [0.0, y[-1], y[-2]], bc_type="natural"
    )
    m_tail = tail(1.0 / r0, 2)
    # on r > r0: f = a/r + b/r³ with a = y0 r0 − M_t/(6 r0), b = M_t r0/6
    a = y[-1] * r0 - m_tail / (6.0 * r0)
    b = m_tail * r0 / 6.0

    def over_the_knots(function):
        pieces = itertools.pairwise(x)
        return sum(
            scipy.integrate.quad(function, *ab, epsrel=1e-13)[0] for ab in pieces
        )

    if k == 0.0:
        return 4.0 * math.pi * over_the_knots(lambda r: r * r * spline(r))
    inner = over_the_knots(lambda r: r * spline(r) * math.sin(k * r) / k)
    # Abel-regularised ∫_{r0}^∞ sin(kr) dr = cos(k r0)/k; the b/r³ part converges
    outer = a * math.cos(k * r0) / k**2
    outer += scipy.integrate.quad(
        lambda r: b / r**2 / k, r0, np.inf, weight="sin", wvar=k, epsabs=1e-14
    )[0]
    return 4.0 * math.pi * (inner + outer)


def test_spline_ft_matches_quadrature():
    x, y = _grid(10)
    k = np.array([0.0, 0.05, 0.3, 1.0, 2.5, 7.0])
    value = compute_spline_ft(
        torch.tensor(k),
        torch.tensor(x),
        torch.tensor(y),
        compute_second_derivatives(torch.tensor(x), torch.tensor(y)),
    )
    expected = [_spline_transform_by_quadrature(x, y, kk) for kk in k]
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_spline_ft_reference_numbers():
    x = torch.linspace(0.5, 6, 12, dtype=F64)
    y = torch.exp(-x) * torch.cos(x)
    k = torch.tensor([[0.0, 0.3], [1.0, 2.5]], dtype=F64)
    value = compute_spline_ft(k, x, y, compute_second_derivatives(x, y))
    expected = [
        [-7.3519199149025605, -6.23243236643285],
        [0.8116256272275943, 0.5281917939144551],
    ]
    assert value.shape == (2, 2)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-13)
    value32 = compute_spline_ft(k.float(), x, y, compute_second_derivatives(x, y))
    assert value32.dtype == torch.float32


def test_spline_ft_needs_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.special", None)
    x = torch.linspace(0.5, 6, 12, dtype=F64)
    with pytest.raises(ImportError, match="needs scipy"):
        compute_spline_ft(x, x, torch.exp(-x), torch.zeros_like(x))
