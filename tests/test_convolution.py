"""The spread → filter → gather convolution of ``torchpme._core.mesh`` and the mesh
energy of ``torchpme._core.mesh_energy``.

Values against a dense NumPy reference (explicit stencil sums and ``numpy.fft``);
gradients against finite differences, on both backward passes: the potentials'
(``convolve``, any upstream gradient) and the energy's (``convolve_energy``, which
reuses the forward pass); second derivatives with ``gradgradcheck``.
"""

import numpy as np
import pytest
import torch
from lib._reference import dense_gather, dense_spread, kvectors_mesh
from torch.autograd import gradcheck, gradgradcheck

from torchpme._core import defaults, execution, mesh_energy
from torchpme._core import mesh as core_mesh
from torchpme._core.kspace import mesh_k_squared
from torchpme._core.weights import interpolation_scheme

NS = [4, 5, 6]
CELL = [[4.0, 0.0, 0.0], [0.4, 4.5, 0.0], [0.3, -0.2, 5.0]]
# scaled fractional coordinates away from stencil jumps; the third is outside
U = [[0.2, 1.7, 2.3], [2.8, 3.3, 5.2], [4.3, 0.7, 0.8], [1.3, 4.2, 3.7]]
METHODS = [("Lagrange", 4), ("Lagrange", 5), ("P3M", 3)]


def _system(n_channels=2, seed=0):
    rng = np.random.default_rng(seed)
    cell = torch.tensor(CELL, dtype=torch.float64)
    positions = (torch.tensor(U, dtype=torch.float64) / torch.tensor(NS)) @ cell
    charges = torch.tensor(rng.normal(size=(len(U), n_channels)))
    sigma = torch.tensor(rng.uniform(0.8, 1.5, size=n_channels))
    return [t.requires_grad_(True) for t in (charges, positions, cell, sigma)]


def _kernel(k_sq, sigma):
    # per channel, even in k, not a function a mesh method could get right by luck
    return torch.exp(-0.5 * sigma[:, None, None, None] ** 2 * k_sq) / (1.0 + k_sq)


def _potentials(method, n):
    scheme = interpolation_scheme(method, n)

    def function(charges, positions, cell, sigma):
        plan = core_mesh.interpolation_plan(
            positions, torch.linalg.inv(cell), NS, scheme
        )
        kernel = _kernel(mesh_k_squared(cell, NS), sigma)
        return core_mesh.convolve(plan, charges, kernel)

    return function


def _energy(method, n):
    potentials = _potentials(method, n)

    def function(charges, positions, cell, sigma):
        return 0.7 * (charges * potentials(charges, positions, cell, sigma)).sum()

    return function


def _energy_function(method, n):
    """The same energy through ``convolve_energy``."""
    scheme = interpolation_scheme(method, n)

    def function(charges, positions, cell, sigma):
        plan = core_mesh.interpolation_plan(
            positions, torch.linalg.inv(cell), NS, scheme
        )
        kernel = _kernel(mesh_k_squared(cell, NS), sigma)
        return 0.7 * mesh_energy.convolve_energy(plan, charges, kernel)

    return function


@pytest.fixture(params=["whole", "chunked"])
def chunks(request, monkeypatch):
    """Atoms in one chunk, or in chunks of 100 stencil entries (one atom for 4 and
    5 nodes; 3 atoms and a partial chunk for P3M's 3 nodes)."""
    if request.param == "chunked":
        monkeypatch.setattr(defaults, "STENCIL_ENTRIES", 100)


@pytest.mark.parametrize(("method", "n"), METHODS)
def test_values_match_dense_reference(method, n, chunks):
    charges, positions, cell, sigma = (t.detach() for t in _system())
    result = _potentials(method, n)(charges, positions, cell, sigma)
    mesh = dense_spread(positions.numpy(), cell.numpy(), NS, n, method, charges)
    k, _ = kvectors_mesh(cell.numpy(), NS)
    k_sq = np.sum(k * k, axis=-1)
    s = sigma.numpy()[:, None, None, None]
    kernel = np.exp(-0.5 * s**2 * k_sq) / (1.0 + k_sq)
    spectrum = np.fft.rfftn(mesh, axes=(1, 2, 3)) * kernel
    filtered = np.fft.irfftn(spectrum, s=NS, axes=(1, 2, 3)) * np.prod(NS)
    reference = dense_gather(positions.numpy(), cell.numpy(), NS, n, method, filtered)
    np.testing.assert_allclose(result.numpy(), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("method", "n"), METHODS)
def test_generic_gradient_gradcheck(method, n, chunks):
    # gradcheck's one-hot upstream gradients are not proportional to the charges
    assert gradcheck(_potentials(method, n), tuple(_system()))


@pytest.mark.parametrize(("method", "n"), METHODS)
def test_energy_function_gradcheck(method, n, chunks):
    assert gradcheck(_energy_function(method, n), tuple(_system()))


@pytest.mark.parametrize(("method", "n"), METHODS)
def test_energy_function_equals_the_sum_over_the_potentials(method, n):
    """``convolve_energy`` (whose backward reuses the forward pass) and ``Σ q·φ``
    (whose backward spreads and filters the upstream gradient): same value and
    gradients, to rounding."""
    inputs = _system()
    expected = _energy(method, n)(*inputs)
    result = _energy_function(method, n)(*inputs)
    torch.testing.assert_close(result, expected, rtol=1e-13, atol=0.0)
    for a, b in zip(
        torch.autograd.grad(result, inputs), torch.autograd.grad(expected, inputs)
    ):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_zero_channel():
    charges, positions, cell, sigma = _system()
    charges = charges.detach().clone()
    charges[:, 1] = 0.0
    charges.requires_grad_(True)
    assert gradcheck(_energy("Lagrange", 4), (charges, positions, cell, sigma))
    assert gradcheck(_energy_function("Lagrange", 4), (charges, positions, cell, sigma))


@pytest.mark.parametrize(("method", "n"), [("Lagrange", 4), ("P3M", 3)])
def test_second_derivatives(method, n):
    assert gradgradcheck(_energy(method, n), tuple(_system()))
    assert gradgradcheck(_energy_function(method, n), tuple(_system()))
    assert gradgradcheck(_potentials(method, n), tuple(_system()))


def test_stacked_meshes_equal_single_meshes():
    scheme = interpolation_scheme("Lagrange", 4)
    charges, positions, cell, sigma = (t.detach() for t in _system())
    cells = torch.stack([cell, 1.1 * cell])
    owner = torch.tensor([0, 1, 1, 0])
    inverse = torch.linalg.inv(cells)[owner]
    plan = core_mesh.interpolation_plan(positions, inverse, NS, scheme, owner, 2)
    kernel = _kernel(mesh_k_squared(cells, NS)[None], sigma[:, None])
    stacked = core_mesh.convolve(plan, charges, kernel)
    for system in (0, 1):
        atoms = owner == system
        single = _potentials("Lagrange", 4)(
            charges[atoms], positions[atoms], cells[system], sigma
        )
        assert torch.allclose(stacked[atoms], single, rtol=1e-12, atol=1e-12)


def test_float32_follows_inputs():
    charges, positions, cell, sigma = (t.detach().float() for t in _system())
    result = _potentials("Lagrange", 4)(charges, positions, cell, sigma)
    assert result.dtype == torch.float32
    reference = _potentials("Lagrange", 4)(
        charges.double(), positions.double(), cell.double(), sigma.double()
    )
    assert torch.allclose(result.double(), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_host_transforms_match_torch(dtype, monkeypatch):
    # large single meshes go through scipy's FFT: same values and gradients
    pytest.importorskip("scipy")
    from torchpme._core import execution

    def run():
        charges, positions, cell, sigma = (
            t.detach().to(dtype).requires_grad_(True) for t in _system()
        )
        # one channel: the host path serves single meshes
        energy = _energy("Lagrange", 4)(charges[:, :1], positions, cell, sigma[:1])
        return [energy] + list(torch.autograd.grad(energy, (positions, cell, sigma)))

    reference = run()
    monkeypatch.setattr(defaults, "HOST_FFT_MIN_POINTS", 1)
    mesh = torch.zeros([1] + NS, dtype=dtype)
    assert execution.host_fft_for(mesh, tuple(NS)) is not None
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(run(), reference):
        assert torch.allclose(a, b, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (1, 3, 4, 7)])
def test_differentiable_real_transform(shape):
    """``rfftn`` whose adjoint is one complex-to-real transform: its gradients equal
    torch's own ``rfftn`` backward, to second order, for even and odd last axes."""
    from torchpme._core.fft import differentiable_rfft3

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64, generator=generator)
    x.requires_grad_(True)

    def transform(x):
        return torch.view_as_real(differentiable_rfft3(x))

    assert gradcheck(transform, (x,))
    assert gradgradcheck(transform, (x,))
    upstream = torch.randn(transform(x).shape, dtype=torch.float64, generator=generator)
    plain = torch.view_as_real(torch.fft.rfftn(x, dim=(-3, -2, -1)))
    expected = torch.autograd.grad(plain, x, upstream)[0]
    result = torch.autograd.grad(transform(x), x, upstream)[0]
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-13)


def test_filter_double_backward_runs_no_complex_transform():
    """The kernel gradient of the filter, differentiated again (stress in a loss),
    goes through real transforms only: the backward of ``torch.fft.rfftn`` would
    run a full complex one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from torchpme._core.pipeline import filter_mesh

    class Complex(TorchDispatchMode):
        seen = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "fft_c2c" in str(func):
                Complex.seen += 1
            return func(*args, **(kwargs or {}))

    generator = torch.Generator().manual_seed(2)
    mesh = torch.randn(1, 6, 5, 8, dtype=torch.float64, generator=generator)
    kernel = torch.rand(6, 5, 5, dtype=torch.float64, generator=generator)
    mesh.requires_grad_(True)
    kernel.requires_grad_(True)
    with Complex():
        filtered = filter_mesh(mesh, kernel, "backward", "forward")
        grads = torch.autograd.grad(
            filtered.square().sum(), (mesh, kernel), create_graph=True
        )
        torch.autograd.grad(sum(g.square().sum() for g in grads), (mesh, kernel))
    assert Complex.seen == 0


@pytest.mark.parametrize("host", [False, True])
@pytest.mark.parametrize("sizes", [(8, 6, 10), (7, 6, 9)])
def test_even_transform_equals_the_full_transform(monkeypatch, sizes, host):
    """The transform of a mesh even along each axis, formed on its octant (by
    scipy's cosine transforms for even sizes on the host path) and mirrored,
    equals ``rfftn`` of the whole mirrored mesh."""
    from torchpme._core.fft import even_transform, mirrored_octant

    if host:
        pytest.importorskip("scipy")
        monkeypatch.setattr(defaults, "HOST_FFT_MIN_POINTS", 1)
        # scipy's cosine transforms serve even sizes; odd ones the torch path
        probe = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
        assert execution.host_fft_for(probe, sizes) is not None
    octant = torch.rand([n // 2 + 1 for n in sizes], dtype=torch.float64)
    full = octant
    for axis, n in enumerate(sizes):
        steps = torch.arange(n)
        full = full.index_select(axis, torch.minimum(steps, n - steps))
    expected = torch.fft.rfftn(full).real
    result = mirrored_octant(even_transform(octant, sizes), sizes)
    assert torch.allclose(result, expected, rtol=1e-12, atol=1e-12)
    # the torch.fft path carries gradients
    octant.requires_grad_(True)
    assert mirrored_octant(even_transform(octant, sizes), sizes).requires_grad
