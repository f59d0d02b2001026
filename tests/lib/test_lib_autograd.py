"""Gradients of the ``torchpme.lib`` building blocks, checked against finite
differences with ``torch.autograd.gradcheck`` / ``gradgradcheck`` (float64).

Atoms are placed so that their scaled fractional coordinates have fractional parts
in {0.2, 0.3, 0.7, 0.8}: at least 0.2 away from the integer (even orders) and
half-integer (odd orders) points where the stencil jumps.
"""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torchpme.lib import KSpaceFilter, KSpaceKernel, MeshInterpolator, P3MKSpaceFilter

NS = [4, 5, 6]
CELL = [[4.0, 0.0, 0.0], [0.4, 4.5, 0.0], [0.3, -0.2, 5.0]]
# scaled fractional coordinates u = ns ⊙ frac; the third atom's u[0] = 4.3 lies
# outside the cell (wrapping)
U = [[0.2, 1.7, 2.3], [2.8, 3.3, 5.2], [4.3, 0.7, 0.8]]

GRADCHECK_METHODS = [
    ("Lagrange", 3),
    ("Lagrange", 4),
    ("Lagrange", 7),
    ("P3M", 1),
    ("P3M", 2),
    ("P3M", 5),
]
GRADGRAD_METHODS = [("Lagrange", 4), ("Lagrange", 5), ("P3M", 3)]


def _ids(methods):
    return [f"{m}-{n}" for m, n in methods]


def _system():
    cell = torch.tensor(CELL, dtype=torch.float64)
    positions = (torch.tensor(U, dtype=torch.float64) / torch.tensor(NS)) @ cell
    rng = np.random.default_rng(0)
    charges = torch.tensor(rng.normal(size=(3, 2)))
    mesh = torch.tensor(rng.normal(size=(2, *NS)))
    return [
        t.detach().clone().requires_grad_(True)
        for t in (charges, positions, cell, mesh)
    ]


class GaussianKernel(KSpaceKernel):
    def __init__(self, sigma: torch.Tensor):
        super().__init__()
        self.sigma = sigma

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        # per-channel filter (C, nx, ny, nz//2+1) with an extra k-dependent factor
        return torch.exp(-0.5 * self.sigma[:, None, None, None] ** 2 * k_sq) / (
            1.0 + k_sq
        )


def _spread(method, n):
    def function(charges, positions, cell):
        interpolator = MeshInterpolator(cell, torch.tensor(NS), n, method)
        interpolator.compute_weights(positions)
        return interpolator.points_to_mesh(charges)

    return function


def _gather(method, n):
    def function(mesh, positions, cell):
        interpolator = MeshInterpolator(cell, torch.tensor(NS), n, method)
        interpolator.compute_weights(positions)
        return interpolator.mesh_to_points(mesh)

    return function


@pytest.mark.parametrize(
    ("method", "n"), GRADCHECK_METHODS, ids=_ids(GRADCHECK_METHODS)
)
def test_points_to_mesh_gradcheck(method, n):
    charges, positions, cell, _ = _system()
    assert gradcheck(_spread(method, n), (charges, positions, cell))


@pytest.mark.parametrize(
    ("method", "n"), GRADCHECK_METHODS, ids=_ids(GRADCHECK_METHODS)
)
def test_mesh_to_points_gradcheck(method, n):
    _, positions, cell, mesh = _system()
    assert gradcheck(_gather(method, n), (mesh, positions, cell))


@pytest.mark.parametrize(("method", "n"), GRADGRAD_METHODS, ids=_ids(GRADGRAD_METHODS))
def test_points_to_mesh_gradgradcheck(method, n):
    charges, positions, cell, _ = _system()
    assert gradgradcheck(_spread(method, n), (charges, positions, cell))


@pytest.mark.parametrize(("method", "n"), GRADGRAD_METHODS, ids=_ids(GRADGRAD_METHODS))
def test_mesh_to_points_gradgradcheck(method, n):
    _, positions, cell, mesh = _system()
    assert gradgradcheck(_gather(method, n), (mesh, positions, cell))


def test_positions_gradient_is_not_trivially_zero():
    # a guard for the checks above: the spread mesh depends on the positions
    charges, positions, cell, _ = _system()
    mesh = _spread("Lagrange", 4)(charges, positions, cell)
    (grad,) = torch.autograd.grad(torch.sin(mesh).sum(), positions)
    assert grad.abs().max() > 1e-3


def _kspace_filter(filter_class):
    def build(cell, kernel):
        if filter_class is P3MKSpaceFilter:
            return P3MKSpaceFilter(cell, torch.tensor(NS), 3, kernel)
        return KSpaceFilter(cell, torch.tensor(NS), kernel)

    return build


FILTERS = [KSpaceFilter, P3MKSpaceFilter]


@pytest.mark.parametrize("filter_class", FILTERS, ids=lambda c: c.__name__)
def test_kspace_filter_gradcheck_mesh_and_kernel_parameters(filter_class):
    _, _, cell, mesh = _system()
    cell = cell.detach()
    sigma = torch.tensor([0.6, 1.1], dtype=torch.float64, requires_grad=True)
    kernel = GaussianKernel(sigma.detach())
    kfilter = _kspace_filter(filter_class)(cell, kernel)

    def function(mesh, sigma):
        kernel.sigma = sigma
        kfilter.update()
        return kfilter.forward(mesh)

    # fast mode (random projections of the Jacobian): the mesh has 240 entries
    assert gradcheck(function, (mesh, sigma), fast_mode=True)
    assert gradgradcheck(function, (mesh, sigma), fast_mode=True)


@pytest.mark.parametrize("filter_class", FILTERS, ids=lambda c: c.__name__)
def test_kspace_filter_gradcheck_cell(filter_class):
    _, _, cell, mesh = _system()
    kernel = GaussianKernel(torch.tensor([0.6, 1.1], dtype=torch.float64))
    kfilter = _kspace_filter(filter_class)(cell.detach(), kernel)

    def function(mesh, cell):
        kfilter.update(cell=cell)
        return kfilter.forward(mesh)

    assert gradcheck(function, (mesh, cell), fast_mode=True)


def test_full_pipeline_gradcheck():
    # spread -> filter -> gather, with respect to everything at once
    charges, positions, cell, _ = _system()
    sigma = torch.tensor([0.5, 0.9], dtype=torch.float64, requires_grad=True)
    kernel = GaussianKernel(sigma.detach())
    kfilter = KSpaceFilter(cell.detach(), torch.tensor(NS), kernel)

    def function(charges, positions, cell, sigma):
        interpolator = MeshInterpolator(cell, torch.tensor(NS), 4, "Lagrange")
        interpolator.compute_weights(positions)
        mesh = interpolator.points_to_mesh(charges)
        kernel.sigma = sigma
        kfilter.update(cell=cell)
        potential = interpolator.mesh_to_points(kfilter.forward(mesh))
        return (charges * potential).sum()

    assert gradcheck(function, (charges, positions, cell, sigma))


def test_energy_backward_through_the_filter_with_weighted_channels():
    charges, positions, cell, _ = _system()
    kernel = GaussianKernel(torch.tensor([0.5, 0.9], dtype=torch.float64))
    kfilter = KSpaceFilter(cell.detach(), torch.tensor(NS), kernel)

    def energy(charges, positions):
        interpolator = MeshInterpolator(cell.detach(), torch.tensor(NS), 4, "Lagrange")
        interpolator.compute_weights(positions)
        filtered = kfilter.forward(interpolator.points_to_mesh(charges))
        # different weights per channel: the factors differ between channels
        weights = torch.tensor([1.0, -2.5], dtype=torch.float64)
        return (weights * charges * interpolator.mesh_to_points(filtered)).sum()

    assert gradcheck(energy, (charges, positions))
