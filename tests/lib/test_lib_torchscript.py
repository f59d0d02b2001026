"""TorchScript: a module holding a ``MeshInterpolator``, a k-space filter and a
``KSpaceKernel`` subclass scripts and gives the eager values and gradients
(like the end of the seed's autograd demo)."""

import numpy as np
import pytest
import torch

from torchpme.lib import KSpaceFilter, KSpaceKernel, MeshInterpolator, P3MKSpaceFilter

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


class SmearedCoulomb(KSpaceKernel):
    """``exp(-σ² k²/2)/k²`` with a trainable ``σ²``, zero at the Gamma point."""

    def __init__(self, sigma2: float):
        super().__init__()
        self.sigma2 = torch.nn.Parameter(torch.tensor(sigma2, dtype=torch.float64))

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        zero = k_sq == 0
        safe = torch.where(zero, torch.ones_like(k_sq), k_sq)
        value = torch.exp(-0.5 * self.sigma2 * safe) / safe
        return torch.where(zero, torch.zeros_like(k_sq), value)


class MeshModel(torch.nn.Module):
    def __init__(self, p3m: bool):
        super().__init__()
        cell = torch.eye(3, dtype=torch.float64)
        ns = torch.tensor([1, 1, 1])
        kernel = SmearedCoulomb(0.8)
        if p3m:
            self.interpolator = MeshInterpolator(cell, ns, 3, "P3M")
            self.kfilter = P3MKSpaceFilter(
                cell, ns, 3, kernel, fft_norm="backward", ifft_norm="forward"
            )
        else:
            self.interpolator = MeshInterpolator(cell, ns, 4, "Lagrange")
            self.kfilter = KSpaceFilter(cell, ns, kernel)

    def forward(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
        ns_mesh: torch.Tensor,
    ) -> torch.Tensor:
        self.interpolator.update(cell=cell, ns_mesh=ns_mesh)
        self.interpolator.compute_weights(positions)
        mesh = self.interpolator.points_to_mesh(charges)
        self.kfilter.update(cell, ns_mesh)
        potential = self.interpolator.mesh_to_points(self.kfilter.forward(mesh))
        return (charges * potential).sum()


def _inputs(seed):
    rng = np.random.default_rng(seed)
    cell = torch.tensor(
        [[4.0, 0.0, 0.0], [0.4, 4.5, 0.0], [0.3, -0.2, 5.0]], dtype=torch.float64
    )
    cell = cell + 0.05 * torch.tensor(rng.normal(size=(3, 3)))
    positions = torch.tensor(rng.uniform(size=(6, 3))) @ cell
    charges = torch.tensor(rng.normal(size=(6, 2)))
    return [t.requires_grad_(True) for t in (positions, cell, charges)]


def _value_and_grads(module, ns, seed):
    positions, cell, charges = _inputs(seed)
    module.zero_grad()
    value = module(positions, cell, charges, torch.tensor(ns))
    value.backward()
    sigma2 = module.kfilter.kernel.sigma2.grad.clone()
    return value.detach(), positions.grad, cell.grad, charges.grad, sigma2


@pytest.mark.parametrize("p3m", [False, True], ids=["Lagrange+KSpaceFilter", "P3M"])
def test_scripted_module_matches_eager(p3m):
    eager = MeshModel(p3m)
    scripted = torch.jit.script(MeshModel(p3m))
    for seed, ns in [(0, [5, 6, 7]), (1, [4, 4, 8])]:
        expected = _value_and_grads(eager, ns, seed)
        actual = _value_and_grads(scripted, ns, seed)
        for name, a, e in zip(
            ["value", "positions", "cell", "charges", "sigma2"], actual, expected
        ):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12, msg=name)
        # the gradients are not all trivially zero
        assert expected[1].abs().max() > 1e-6
        assert expected[4].abs() > 1e-6


@pytest.mark.parametrize(
    "build",
    [
        lambda c, n: MeshInterpolator(c, n, 5, "Lagrange"),
        lambda c, n: KSpaceFilter(c, n, SmearedCoulomb(1.0)),
        lambda c, n: P3MKSpaceFilter(c, n, 2, SmearedCoulomb(1.0), mode=1),
    ],
    ids=["MeshInterpolator", "KSpaceFilter", "P3MKSpaceFilter"],
)
def test_classes_script_alone(build):
    cell = torch.eye(3, dtype=torch.float64)
    module = build(cell, torch.tensor([4, 4, 4]))
    scripted = torch.jit.script(module)
    scripted.update(cell=2.0 * cell)
