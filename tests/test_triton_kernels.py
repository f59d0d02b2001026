"""The fused Triton kernels (GPU fast paths) against the PyTorch forms they replace.

Run on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``), so they need
Triton installed, not a GPU; skipped without it. The values come from the PyTorch
functions of ``_core.stencil`` and ``_core.distances`` and from plain autograd of
``‖r_j − r_i + S A‖``, which the kernels do not use. ``test_cuda.py`` repeats the
calculator checks on a GPU, where the kernels are compiled.
"""

import importlib
import os

import numpy as np
import pytest
import torch
from reference import neighbor_list

from torchpme import CoulombPotential, P3MCalculator, PMECalculator
from torchpme._core import defaults, execution, shortrange, stencil
from torchpme.neighbors import pair_distances

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def kernels(monkeypatch):
    """The kernel module, its calls routed to it on this test's device too."""
    if DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton was imported before TRITON_INTERPRET=1 was set")
    triton = pytest.importorskip("triton")
    version = tuple(int(part) for part in triton.__version__.split(".")[:2])
    if version < execution.MINIMUM_TRITON:
        pytest.skip(f"Triton {triton.__version__} is older than the kernels need")
    module = importlib.import_module("torchpme._core.triton_kernels")
    monkeypatch.setattr(execution, "DEVICE_TYPES", ("cuda", DEVICE.type))
    monkeypatch.setattr(execution, "_LOADED", [module])
    return module


def pytorch_form(function, *args):
    """``function(*args)`` with the kernels turned off (the reference)."""
    enabled, defaults.TRITON = defaults.TRITON, False
    try:
        return function(*args)
    finally:
        defaults.TRITON = enabled


def random_plan(n_atoms, n, ns, dtype, seed=0):
    """Node shares of the flat index of an ``ns`` mesh and 1-D weights, ``(N, 3,
    n)``: random nodes (many atoms share nodes, so the additions collide)."""
    generator = torch.Generator().manual_seed(seed)
    nodes = torch.stack(
        [torch.randint(0, m, (n_atoms, n), generator=generator) for m in ns], 1
    )
    nodes[:, 0] *= ns[1] * ns[2]
    nodes[:, 1] *= ns[2]
    weights = torch.rand(n_atoms, 3, n, generator=generator, dtype=torch.float64)
    return nodes.to(DEVICE), weights.to(DEVICE, dtype)


def randn(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=torch.float64).to(DEVICE, dtype)


TOLERANCE = {torch.float64: 1e-13, torch.float32: 2e-5}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 8])
@pytest.mark.parametrize("n_channels", [1, 3])
@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32], ids=["float64", "float32"]
)
def test_spread_and_gather_equal_the_pytorch_forms(kernels, n, n_channels, dtype):
    ns = [5, 6, 7]
    size = 2 * 5 * 6 * 7  # a stack of two meshes: nodes in the first one only
    nodes, weights = random_plan(150, n, ns, dtype)  # not a multiple of a block
    values = randn(150, n_channels, dtype=dtype)
    mesh = kernels.scatter(nodes, weights, values, size)
    expected = pytorch_form(stencil.scatter, nodes, weights, values, size)
    scale = expected.abs().max().item()
    assert mesh.dtype == dtype and mesh.shape == expected.shape
    assert torch.allclose(mesh, expected, rtol=0, atol=TOLERANCE[dtype] * scale)
    assert mesh[:, size // 2 :].abs().max() == 0

    field = randn(n_channels, size, dtype=dtype)
    for keep in (True, False):
        out, grads = kernels.gather_with_weight_gradients(field, nodes, weights, keep)
        ref_out, ref_grads = pytorch_form(
            stencil.gather_with_weight_gradients, field, nodes, weights, keep
        )
        assert out.shape == ref_out.shape == (150, n_channels)
        assert torch.allclose(out, ref_out, rtol=0, atol=TOLERANCE[dtype] * 10)
        if keep:
            assert grads.shape == ref_grads.shape == (n_channels, 150, 3, n)
            assert torch.allclose(grads, ref_grads, rtol=0, atol=TOLERANCE[dtype] * 10)
        else:
            assert grads is None


def test_empty_plans(kernels):
    nodes, weights = random_plan(0, 4, [4, 4, 4], torch.float64)
    mesh = kernels.scatter(nodes, weights, randn(0, 2), 64)
    assert mesh.shape == (2, 64) and mesh.abs().sum() == 0
    out, grads = kernels.gather_with_weight_gradients(mesh, nodes, weights, True)
    assert out.shape == (0, 2) and grads.shape == (2, 0, 3, 4)


def test_empty_pair_lists(kernels):
    positions = randn(5, 3)
    cell = torch.eye(3, dtype=torch.float64, device=DEVICE)
    none = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    shifts = torch.zeros(0, 3, dtype=torch.int64, device=DEVICE)
    distances = kernels.pair_distances(positions, cell, none, none, shifts)
    assert distances.shape == (0,)
    grads = kernels.pair_distances_backward(
        positions, cell, none, none, shifts, distances, distances, True, True
    )
    assert grads[0].abs().sum() == 0 and grads[1].abs().sum() == 0
    constants = torch.tensor(1.0, dtype=torch.float64, device=DEVICE)
    potential, values, slopes = kernels.coulomb_pair_sum(
        randn(5, 2), none, none, distances, constants, constants, False, True, True
    )
    assert potential.shape == (5, 2) and potential.abs().sum() == 0
    assert values.shape == slopes.shape == (0,)


def composed_distances(positions, cell, pairs, shifts):
    vectors = positions[pairs[:, 1]] - positions[pairs[:, 0]] + shifts.double() @ cell
    return torch.linalg.vector_norm(vectors, dim=-1)


@pytest.mark.parametrize("shift_dtype", [torch.int64, torch.int32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
def test_pair_distances_and_their_gradients(kernels, shift_dtype, index_dtype):
    rng = np.random.default_rng(3)
    cell_np = 6.0 * np.eye(3) + rng.uniform(-0.8, 0.8, (3, 3))
    positions_np = rng.uniform(-0.2, 1.2, (40, 3)) @ cell_np
    pairs_np, shifts_np = neighbor_list(positions_np, cell_np, 4.5)
    positions = torch.tensor(positions_np, device=DEVICE)
    positions[7] = positions[3]  # a pair at distance 0 (its gradient is taken as 0)
    cell = torch.tensor(cell_np, device=DEVICE)
    pairs = torch.cat([torch.from_numpy(pairs_np), torch.tensor([[3, 7]])]).to(DEVICE)
    shifts = torch.cat([torch.tensor(shifts_np), torch.zeros(1, 3)]).to(DEVICE)
    first = pairs[:, 0].to(index_dtype)
    second = pairs[:, 1].to(index_dtype)
    shifts_in = shifts.round().to(shift_dtype)

    distances = kernels.pair_distances(positions, cell, first, second, shifts_in)
    expected = composed_distances(positions, cell, pairs, shifts)
    assert torch.allclose(distances, expected, rtol=1e-14, atol=1e-14)
    assert distances[-1] == 0

    grad = randn(distances.shape[0])
    grad_positions, grad_cell = kernels.pair_distances_backward(
        positions, cell, first, second, shifts_in, distances, grad, True, True
    )
    pos = positions.clone().requires_grad_(True)
    cel = cell.clone().requires_grad_(True)
    safe = composed_distances(pos, cel, pairs[:-1], shifts[:-1])  # norm' at 0: NaN
    ref_positions, ref_cell = torch.autograd.grad(safe, (pos, cel), grad[:-1])
    assert torch.allclose(grad_positions, ref_positions, rtol=1e-12, atol=1e-12)
    assert torch.allclose(grad_cell, ref_cell, rtol=1e-12, atol=1e-12)
    only_cell = kernels.pair_distances_backward(
        positions, cell, first, second, shifts_in, distances, grad, False, True
    )
    assert only_cell[0] is None and torch.allclose(only_cell[1], grad_cell)


# the interpreter's erfc is 1 − erf (see triton_kernels): 1e-11 relative at x = 3
PAIR_TOLERANCE = 1e-12 if DEVICE.type == "cuda" else 1e-10


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("n_channels", [1, 2])
@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32], ids=["float64", "float32"]
)
def test_coulomb_pair_sum_and_its_gradients(kernels, full, n_channels, dtype):
    generator = torch.Generator().manual_seed(4)
    n_atoms, n_pairs = 30, 700  # atoms in many pairs: colliding additions
    pairs = torch.randint(0, n_atoms, (n_pairs, 2), generator=generator)
    distances = 0.3 + 6.0 * torch.rand(
        n_pairs, generator=generator, dtype=torch.float64
    )
    charges = torch.randn(n_atoms, n_channels, generator=generator, dtype=torch.float64)
    grad = torch.randn(n_atoms, n_channels, generator=generator, dtype=torch.float64)
    pairs, distances, charges, grad = (
        t.to(DEVICE) for t in (pairs, distances, charges, grad)
    )
    distances, charges, grad = (t.to(dtype) for t in (distances, charges, grad))
    smearing = torch.tensor(1.4, dtype=dtype, device=DEVICE)  # r/√2σ up to 3.2
    prefactor = torch.tensor(14.4, dtype=dtype, device=DEVICE)

    def pair_sum():
        q = charges.clone().requires_grad_(True)
        r = distances.clone().requires_grad_(True)
        potential = shortrange.coulomb_pair_sum(q, pairs, r, smearing, prefactor, full)
        return (potential, *torch.autograd.grad(potential, (q, r), grad))

    expected = pytorch_form(pair_sum)
    calls = []
    original = kernels.coulomb_pair_sum
    kernels.coulomb_pair_sum = lambda *a: calls.append(1) or original(*a)
    try:
        result = pair_sum()
    finally:
        kernels.coulomb_pair_sum = original
    assert calls
    tolerance = PAIR_TOLERANCE if dtype == torch.float64 else 2e-5
    for value, reference in zip(result, expected):
        scale = reference.abs().max().item()
        assert torch.allclose(value, reference, rtol=0, atol=tolerance * scale)


CALCULATORS = {
    "pme": lambda: PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.8),
    "p3m": lambda: P3MCalculator(
        CoulombPotential(smearing=1.0), mesh_spacing=0.9, interpolation_nodes=3
    ),
}


def skewed_system():
    """A skewed cell with atoms outside it, its half pair list, on the device."""
    rng = np.random.default_rng(5)
    cell = 6.5 * np.eye(3) + rng.uniform(-0.5, 0.5, (3, 3))
    positions = rng.uniform(-0.2, 1.2, (32, 3)) @ cell
    charges = rng.normal(size=(32, 1))
    pairs, shifts = neighbor_list(positions, cell, 3.5)
    arrays = (positions, charges, cell, pairs, shifts)
    return [torch.from_numpy(np.asarray(a)).to(DEVICE) for a in arrays]


def step(calculator, use_energy, positions, charges, cell, pairs, shifts):
    """Energy, forces, charge and cell gradients of one calculator call."""
    pos = positions.clone().requires_grad_(True)
    q = charges.clone().requires_grad_(True)
    cel = cell.clone().requires_grad_(True)
    distances = pair_distances(pos, cel, pairs, shifts)
    if use_energy:
        energy = calculator.energy(q, cel, pos, pairs, distances)
    else:
        energy = (q * calculator(q, cel, pos, pairs, distances)).sum()
    return (energy, *torch.autograd.grad(energy, (pos, q, cel)))


@pytest.mark.parametrize("method", CALCULATORS)
@pytest.mark.parametrize("use_energy", [True, False])
def test_calculators_with_fused_kernels_equal_the_pytorch_path(
    method, use_energy, kernels, monkeypatch
):
    data = skewed_system()
    calculator = CALCULATORS[method]().to(DEVICE)
    expected = pytorch_form(step, calculator, use_energy, *data)
    calls = []
    names = (
        "scatter", "gather_with_weight_gradients", "pair_distances", "coulomb_pair_sum"
    )  # fmt: skip
    for name in names:
        original = getattr(kernels, name)
        monkeypatch.setattr(
            kernels, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a)
        )
    result = step(calculator, use_energy, *data)
    assert set(calls) == set(names)
    for value, reference in zip(result, expected):
        scale = reference.abs().max().item()
        assert torch.allclose(value, reference, rtol=0, atol=PAIR_TOLERANCE * scale)


def test_second_derivatives_leave_the_kernels(kernels):
    """Forces in a loss: the backward passes run differentiable PyTorch forms."""
    positions, charges, cell, pairs, shifts = skewed_system()
    calculator = CALCULATORS["pme"]().to(DEVICE)

    def loss():
        pos = positions.clone().requires_grad_(True)
        q = charges.clone().requires_grad_(True)
        distances = pair_distances(pos, cell, pairs, shifts)
        energy = calculator.energy(q, cell, pos, pairs, distances)
        forces = torch.autograd.grad(energy, pos, create_graph=True)[0]
        return torch.autograd.grad(forces.square().sum(), (pos, q))

    for value, reference in zip(loss(), pytorch_form(loss)):
        assert torch.allclose(value, reference, rtol=1e-12, atol=1e-12)


def test_which_calls_use_the_kernels(kernels, monkeypatch):
    """CPU tensors (unless routed there, as here), a disabled switch, deterministic
    algorithms and a Triton older than the kernels need keep the PyTorch forms."""
    tensor = torch.zeros(3, device=DEVICE)
    assert execution.kernels_for(tensor) is kernels
    assert execution.kernels_for(torch.zeros(3, device="meta")) is None
    monkeypatch.setattr(defaults, "TRITON", False)
    assert execution.kernels_for(tensor) is None
    monkeypatch.setattr(defaults, "TRITON", True)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert execution.kernels_for(tensor) is None
    monkeypatch.undo()  # the fixture's routing too: set it again
    monkeypatch.setattr(execution, "DEVICE_TYPES", ("cuda", DEVICE.type))
    monkeypatch.setattr(execution, "_LOADED", [])
    import triton

    monkeypatch.setattr(triton, "__version__", "2.3.1")
    assert execution.kernels_for(tensor) is None
