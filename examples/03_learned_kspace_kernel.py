"""A custom reciprocal-space kernel, trained by gradient descent.

Any module with ``kernel_from_k_sq`` can filter a mesh in a
:class:`torchpme.lib.KSpaceFilter`. Here the kernel is a smeared Coulomb
``G(k) = A · 4π e^{−s² k²/2} / k²`` with a trainable amplitude ``A`` and width
``s``. Targets are the per-atom potentials produced by a
hidden set of parameters on random structures; Adam recovers them, because
gradients flow from the atoms back through the mesh interpolation, the FFTs and
the kernel evaluation.

Run: ``python examples/03_learned_kspace_kernel.py``
"""

import math

import torch

from torchpme.lib import KSpaceFilter, KSpaceKernel, MeshInterpolator, get_ns_mesh

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)


class SmearedCoulombKernel(KSpaceKernel):
    """``A · 4π e^{−s² k²/2} / k²`` (zero at ``k = 0``), log-parametrised ``A, s``."""

    def __init__(self, amplitude: float, width: float):
        super().__init__()
        self.log_amplitude = torch.nn.Parameter(torch.tensor(math.log(amplitude)))
        self.log_width = torch.nn.Parameter(torch.tensor(math.log(width)))

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        amplitude = self.log_amplitude.exp()
        width = self.log_width.exp()
        safe = torch.where(k_sq == 0, torch.ones_like(k_sq), k_sq)
        kernel = amplitude * 4 * math.pi * torch.exp(-0.5 * width**2 * k_sq) / safe
        return torch.where(k_sq == 0, torch.zeros_like(k_sq), kernel)

    def values(self):
        return [float(p.detach().exp()) for p in self.parameters()]


class MeshModel:
    """One structure on its mesh: the interpolation plan and charge density are
    fixed (positions do not move); only the kernel changes between calls."""

    def __init__(self, kernel, cell, positions, charges, mesh_spacing=0.8):
        ns = get_ns_mesh(cell, mesh_spacing)
        self.interpolator = MeshInterpolator(cell, ns, 4, method="Lagrange")
        self.interpolator.compute_weights(positions)
        self.density = self.interpolator.points_to_mesh(charges)
        self.filter = KSpaceFilter(
            cell, ns, kernel, fft_norm="backward", ifft_norm="forward"
        )
        self.volume = torch.abs(torch.linalg.det(cell))

    def potentials(self):
        """Per-atom potentials ``(N, 1)``: filter the density, gather at the atoms."""
        self.filter.update()  # re-evaluate the kernel with its current parameters
        mesh = self.filter(self.density)
        return self.interpolator.mesh_to_points(mesh) / self.volume


def random_structure(n_atoms=12, box=6.0):
    cell = box * torch.eye(3) + 0.3 * torch.randn(3, 3)
    positions = torch.rand(n_atoms, 3) @ cell
    charges = torch.randn(n_atoms, 1)
    return cell, positions, charges - charges.mean()


def main():
    truth = SmearedCoulombKernel(amplitude=1.0, width=1.2)
    model = SmearedCoulombKernel(amplitude=0.5, width=0.7)
    data = []
    for _ in range(4):
        structure = random_structure()
        with torch.no_grad():
            target = MeshModel(truth, *structure).potentials()
        data.append((MeshModel(model, *structure), target))

    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(150):
        optimizer.zero_grad()
        loss = sum(torch.mean((mesh.potentials() - t) ** 2) for mesh, t in data)
        loss.backward()
        optimizer.step()
        if step % 30 == 0:
            rounded = [round(v, 4) for v in model.values()]
            print(f"step {step:3d}  loss {float(loss):.3e}  A, s = {rounded}")
    print(f"learned   A, s = {[round(v, 4) for v in model.values()]}")
    print(f"hidden    A, s = {truth.values()}")
    for learned, hidden in zip(model.values(), truth.values()):
        assert abs(learned - hidden) < 0.02 * hidden, (learned, hidden)


if __name__ == "__main__":
    main()
