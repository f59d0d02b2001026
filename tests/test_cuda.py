"""Accelerator checks: every calculator gives its CPU results on the device (values and
gradients), float32 stays accurate there, fixed-shape steps never synchronise with
the host and can be captured in a CUDA graph, and batches and compiled calculators
match their eager, per-system results.

Skipped without CUDA. ``TORCHPME_TEST_DEVICE`` names another device for the checks
that need no CUDA runtime (``TORCHPME_TEST_DEVICE=cpu`` runs them here, as a dry run
of the comparisons: they then compare the CPU with itself).
"""

import os

import numpy as np
import pytest
import torch
from reference import neighbor_list, requires_compile

from torchpme import (
    Calculator,
    CalculatorDipole,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
    SplinePotential,
)
from torchpme.lib import generate_kvectors_for_ewald
from torchpme.neighbors import pair_distances

DEVICE = torch.device(os.environ.get("TORCHPME_TEST_DEVICE", "cuda"))
CUDA = DEVICE.type == "cuda"
pytestmark = pytest.mark.skipif(
    CUDA and not torch.cuda.is_available(), reason="needs a CUDA device"
)
needs_cuda = pytest.mark.skipif(not CUDA, reason="a CUDA runtime check")

CUTOFF = 4.0


def system(n_atoms=48, seed=0, dtype=torch.float64):
    """A neutral, skewed cell with some atoms outside it, and its half pair list."""
    rng = np.random.default_rng(seed)
    cell = 7.0 * np.eye(3) + rng.uniform(-0.6, 0.6, size=(3, 3))
    positions = rng.uniform(-0.1, 1.1, size=(n_atoms, 3)) @ cell
    charges = rng.normal(size=(n_atoms, 1))
    charges -= charges.mean()
    pairs, shifts = neighbor_list(positions, cell, CUTOFF)
    tensors = [torch.tensor(a, dtype=dtype) for a in (positions, charges, cell)]
    return (*tensors, torch.from_numpy(pairs), torch.tensor(shifts, dtype=dtype))


def spline_potential():
    r = torch.linspace(0.5, 8.0, 60, dtype=torch.float64)
    return SplinePotential(r_grid=r, y_grid=torch.erf(r) / r, smearing=1.0)


CALCULATORS = {
    "direct": lambda: Calculator(CoulombPotential()),
    "ewald": lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.6),
    "pme": lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.5, 4),
    "p3m": lambda: P3MCalculator(CoulombPotential(smearing=1.0), 0.5, 5),
    "pme-power": lambda: PMECalculator(
        InversePowerLawPotential(exponent=2, smearing=1.0), 0.5, 6
    ),
    "p3m-spline": lambda: P3MCalculator(spline_potential(), 0.5, 3),
}


def energy_and_gradients(calculator, positions, charges, cell, pairs, shifts):
    """Potentials and the energy's gradients to positions, charges and cell."""
    inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
    distances = pair_distances(inputs[0], inputs[2], pairs, shifts)
    potentials = calculator(inputs[1], inputs[2], inputs[0], pairs, distances)
    energy = (inputs[1] * potentials).sum()
    return [potentials.detach(), *torch.autograd.grad(energy, inputs)]


def on(device, tensors):
    return [t.to(device) for t in tensors]


@pytest.mark.parametrize("name", list(CALCULATORS))
def test_device_matches_cpu(name):
    inputs = system()
    expected = energy_and_gradients(CALCULATORS[name](), *inputs)
    result = energy_and_gradients(CALCULATORS[name]().to(DEVICE), *on(DEVICE, inputs))
    for value, reference in zip(result, expected, strict=True):
        assert value.device.type == DEVICE.type
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name", ["pme", "p3m"])
def test_distributed_calculator_on_device_matches_cpu(name):
    """torchpme.distributed in one process on the device (a one-GPU machine cannot
    run NCCL ranks): its potentials and gradients equal the CPU calculator's."""
    from torchpme.distributed import DistributedCalculator

    positions, charges, cell, pairs, shifts = system()
    expected = energy_and_gradients(CALCULATORS[name](), positions, charges, cell,
                                    pairs, shifts)  # fmt: skip
    module = DistributedCalculator(CALCULATORS[name]().to(DEVICE), CUTOFF)
    inputs = [t.to(DEVICE).requires_grad_(True) for t in (positions, charges, cell)]
    potentials = module(inputs[1], inputs[2], inputs[0])
    energy = (inputs[1] * potentials).sum()
    result = [potentials.detach(), *torch.autograd.grad(energy, inputs)]
    for value, reference in zip(result, expected, strict=True):
        assert value.device.type == DEVICE.type
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name", ["ewald", "pme", "p3m"])
def test_float32_on_device(name):
    """float32 on the device against float64 on the CPU: relative RMS errors of
    potentials and forces far below the method's own error."""
    inputs = system()
    expected = energy_and_gradients(CALCULATORS[name](), *inputs)
    single = on(DEVICE, [t.float() if t.is_floating_point() else t for t in inputs])
    calculator = CALCULATORS[name]().to(device=DEVICE, dtype=torch.float32)
    result = energy_and_gradients(calculator, *single)
    for value, reference in zip(result, expected, strict=True):
        assert value.dtype == torch.float32
        error = (value.cpu().double() - reference).norm() / reference.norm()
        assert error < 1e-5, float(error)


def test_dipoles_on_device():
    positions, _, cell, pairs, shifts = system(24)
    dipoles = torch.randn(
        24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]

    def run(device):
        calculator = CalculatorDipole(
            PotentialDipole(smearing=1.0), lr_wavelength=0.6
        ).to(device)
        d, c, p, i, v = on(device, (dipoles, cell, positions, pairs, vectors))
        p.requires_grad_(True)
        field = calculator(d, c, p, i, v)
        return field.detach(), torch.autograd.grad((d * field).sum(), p)[0]

    for value, reference in zip(run(DEVICE), run("cpu"), strict=True):
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-10, atol=1e-11)


def test_pair_distances_on_device():
    positions, _, cell, pairs, shifts = system()
    weights = torch.rand(len(pairs), dtype=torch.float64)

    def run(device):
        p, c, i, s, w = on(device, (positions, cell, pairs, shifts, weights))
        p.requires_grad_(True)
        c.requires_grad_(True)
        distances = pair_distances(p, c, i, s)
        return [distances.detach(), *torch.autograd.grad((w * distances).sum(), (p, c))]

    for value, reference in zip(run(DEVICE), run("cpu"), strict=True):
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ewald", "pme", "p3m"])
def test_forward_batch_on_device_equals_loop(name):
    """Three systems of two sizes (two share a mesh) in one call on the device."""
    parts = [system(n, seed) for n, seed in ((40, 1), (40, 2), (24, 3))]
    calculator = CALCULATORS[name]().to(DEVICE)
    expected = []
    for positions, charges, cell, pairs, shifts in parts:
        p, q, c, i, s = on(DEVICE, (positions, charges, cell, pairs, shifts))
        expected.append(calculator(q, c, p, i, pair_distances(p, c, i, s)))
    offsets = np.cumsum([0] + [len(part[0]) for part in parts])
    positions = torch.cat([part[0] for part in parts])
    charges = torch.cat([part[1] for part in parts])
    cells = torch.stack([part[2] for part in parts])
    pairs = torch.cat(
        [part[3] + int(o) for part, o in zip(parts, offsets, strict=False)]
    )
    vectors = torch.cat(
        [
            part[0][part[3][:, 1]] + part[4] @ part[2] - part[0][part[3][:, 0]]
            for part in parts
        ]
    )
    index = torch.cat([torch.full((len(p[0]),), k) for k, p in enumerate(parts)])
    q, c, p, b, i, v = on(DEVICE, (charges, cells, positions, index, pairs, vectors))
    result = calculator.forward_batch(q, c, p, b, i, torch.linalg.norm(v, dim=1))
    torch.testing.assert_close(result, torch.cat(expected), rtol=1e-12, atol=1e-12)


FIXED_SHAPES = {
    "ewald": lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.6),
    "pme": lambda: PMECalculator(
        CoulombPotential(smearing=1.0), 0.5, 4, fixed_mesh=[16, 15, 18]
    ),
    "p3m": lambda: P3MCalculator(
        CoulombPotential(smearing=1.0), 0.5, 5, fixed_mesh=[16, 16, 16]
    ),
}


def fixed_step(name, compiled=False, method=False):
    """An energy + forces + stress step of fixed shapes on the device, and the static
    positions tensor it reads (``compiled``: the energy through
    ``torch.compile(fullgraph=True)``, its gradients by the compiled backward;
    ``method``: the energy from ``calculator.energy``)."""
    inputs = system()
    kvectors = generate_kvectors_for_ewald(inputs[2], torch.tensor([9, 9, 9]))
    positions, charges, cell, pairs, shifts, kvectors = on(DEVICE, (*inputs, kvectors))
    calculator = FIXED_SHAPES[name]().to(DEVICE)
    extra = {"kvectors": kvectors} if name == "ewald" else {}
    static = positions.clone()

    def energy(pos, cel):
        distances = pair_distances(pos, cel, pairs, shifts)
        if method:
            return calculator.energy(charges, cel, pos, pairs, distances)
        potentials = calculator(charges, cel, pos, pairs, distances, **extra)
        return (charges * potentials).sum()

    function = torch.compile(energy, fullgraph=True) if compiled else energy

    def step():
        pos = static.clone().requires_grad_(True)
        cel = cell.clone().requires_grad_(True)
        value = function(pos, cel)
        forces, virial = torch.autograd.grad(value, (pos, cel))
        return value.detach(), -forces, virial

    return step, static


def fixed_batch_step(name):
    """``forward_batch`` of two systems on a fixed mesh on the device, as
    :func:`fixed_step` (energy, forces, gradient to the cells)."""
    parts = [system(40, 1), system(24, 2)]
    offsets = [0, len(parts[0][0])]
    packed = [
        torch.cat([part[0] for part in parts]),
        torch.cat([part[1] for part in parts]),
        torch.stack([part[2] for part in parts]),
        torch.cat([part[3] + o for part, o in zip(parts, offsets, strict=True)]),
        torch.cat([part[4] for part in parts]),
        torch.cat([torch.full((len(p[0]),), k) for k, p in enumerate(parts)]),
    ]
    positions, charges, cells, pairs, shifts, owners = on(DEVICE, packed)
    owner_of_pair = owners.index_select(0, pairs[:, 0])
    calculator = FIXED_SHAPES[name]().to(DEVICE)
    static = positions.clone()

    def step():
        pos = static.clone().requires_grad_(True)
        cel = cells.clone().requires_grad_(True)
        vectors = (
            pos.index_select(0, pairs[:, 1])
            - pos.index_select(0, pairs[:, 0])
            + torch.einsum("pi,pij->pj", shifts, cel.index_select(0, owner_of_pair))
        )
        potentials = calculator.forward_batch(
            charges, cel, pos, owners, pairs, vectors.norm(dim=1)
        )
        value = (charges * potentials).sum()
        forces, virial = torch.autograd.grad(value, (pos, cel))
        return value.detach(), -forces, virial

    return step, static


def fixed_energy_step(name):
    """:func:`fixed_step` through ``calculator.energy``, whose backward pass reuses
    the mesh forward pass on the device too."""
    return fixed_step(name, method=True)


STEPS = {name: fixed_step for name in FIXED_SHAPES}
STEPS.update({f"{name}-batch": fixed_batch_step for name in ("pme", "p3m")})
STEPS.update({f"{name}-energy": fixed_energy_step for name in ("pme", "p3m")})


@pytest.mark.parametrize("name", ["pme", "p3m"])
def test_energy_method_on_device_equals_potentials_path(name):
    """``calculator.energy`` on the device: the energy, forces and stress of the
    potentials path (which the other tests compare with the CPU)."""
    through_method, _ = fixed_energy_step(name)
    through_potentials, _ = fixed_step(name)
    for value, reference in zip(through_method(), through_potentials(), strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-11)


@needs_cuda
@pytest.mark.parametrize("name", list(STEPS))
def test_fixed_shape_step_never_synchronises(name):
    step, _ = STEPS[name](name.removesuffix("-batch").removesuffix("-energy"))
    step()  # first call: caches may be filled
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
@pytest.mark.parametrize("name", list(STEPS))
def test_cuda_graph_of_a_step_replays_new_positions(name):
    step, static = STEPS[name](name.removesuffix("-batch").removesuffix("-energy"))
    start = static.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as required
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    generator = torch.Generator(device=DEVICE).manual_seed(5)
    for _ in range(3):
        moved = start + 0.2 * torch.randn(
            start.shape, generator=generator, device=DEVICE, dtype=start.dtype
        )
        static.copy_(moved)
        graph.replay()
        torch.cuda.synchronize()
        replayed = [t.clone() for t in captured]
        expected = step()
        for value, reference in zip(replayed, expected, strict=True):
            torch.testing.assert_close(value, reference, rtol=1e-11, atol=1e-12)


@requires_compile
@pytest.mark.slow
@pytest.mark.parametrize("name", ["pme", "p3m"])
def test_compiled_step_on_device_matches_eager(name):
    expected = fixed_step(name)[0]()
    result = fixed_step(name, compiled=True)[0]()
    for value, reference in zip(result, expected, strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-11)
