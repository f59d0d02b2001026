"""``Calculator.energy``: the same energy and gradients as ``(charges *
calculator(...)).sum()`` for every calculator, derivatives of first and second
order, and for the mesh methods a backward pass without transforms."""

import pytest
import torch
from reference import neighbor_list, requires_compile
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)

DTYPE = torch.float64

CALCULATORS = {
    "direct": lambda: Calculator(CoulombPotential()),
    "ewald": lambda: EwaldCalculator(CoulombPotential(smearing=0.8), 0.6),
    "pme": lambda: PMECalculator(CoulombPotential(smearing=0.8), 0.6, 4),
    "p3m": lambda: P3MCalculator(CoulombPotential(smearing=0.8), 0.6, 5),
    "pme-power": lambda: PMECalculator(
        InversePowerLawPotential(2, smearing=0.8), 0.6, 5
    ),
    "pme-fixed": lambda: PMECalculator(
        CoulombPotential(smearing=0.8), 0.6, 5, fixed_mesh=[9, 10, 11]
    ),
    "p3m-fixed": lambda: P3MCalculator(
        CoulombPotential(smearing=0.8), 0.6, 4, fixed_mesh=[10, 11, 9]
    ),
}


def system(n=10, channels=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    cell = 4.0 * torch.eye(3, dtype=DTYPE) + 0.3 * torch.rand(
        3, 3, dtype=DTYPE, generator=generator
    )
    positions = torch.rand(n, 3, dtype=DTYPE, generator=generator) @ cell
    charges = torch.randn(n, channels, dtype=DTYPE, generator=generator)
    charges[:, 0] -= charges[:, 0].mean()
    pairs, shifts = neighbor_list(positions.numpy(), cell.numpy(), 2.5)
    return positions, charges, cell, torch.from_numpy(pairs), torch.from_numpy(shifts)


def _energy_function(calculator, pairs, shifts, use_energy, periodic=None):
    def energy(positions, charges, cell):
        vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]
        distances = torch.linalg.norm(vectors, dim=1)
        if use_energy:
            return calculator.energy(
                charges, cell, positions, pairs, distances, periodic=periodic
            )
        potentials = calculator(
            charges, cell, positions, pairs, distances, periodic=periodic
        )
        return torch.sum(charges * potentials)

    return energy


@pytest.mark.parametrize("name", list(CALCULATORS))
@pytest.mark.parametrize("periodic", [None, [True, True, False]])
def test_energy_and_gradients_equal_the_potentials_path(name, periodic):
    positions, charges, cell, pairs, shifts = system()
    calculator = CALCULATORS[name]()
    if periodic is not None:
        periodic = torch.tensor(periodic)
    results = []
    for use_energy in (False, True):
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
        function = _energy_function(calculator, pairs, shifts, use_energy, periodic)
        energy = function(*inputs)
        assert energy.dim() == 0
        results.append((energy, *torch.autograd.grad(energy, inputs)))
    for fast, plain in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(fast, plain, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["pme", "p3m"])
def test_gradcheck_and_gradgradcheck(name):
    positions, charges, cell, pairs, shifts = system(n=6, channels=1)
    calculator = CALCULATORS[name]()
    function = _energy_function(calculator, pairs, shifts, True)
    inputs = tuple(t.clone().requires_grad_(True) for t in (positions, charges, cell))
    assert gradcheck(function, inputs)
    assert gradgradcheck(function, inputs)


class _Transforms(TorchDispatchMode):
    """Counts the operators whose name contains ``name``."""

    def __init__(self, name="fft"):
        super().__init__()
        self.name = name
        self.seen = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.name in str(func):
            self.seen += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["pme", "p3m"])
def test_energy_backward_runs_no_transform(name):
    """The potentials' backward pass transforms the upstream gradient; the
    energy's backward pass reuses the forward pass and transforms nothing."""
    positions, charges, cell, pairs, shifts = system()
    calculator = CALCULATORS[name]()
    counts = {}
    for use_energy in (False, True):
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
        energy = _energy_function(calculator, pairs, shifts, use_energy)(*inputs)
        with _Transforms() as mode:
            torch.autograd.grad(energy, inputs[:2])
        counts[use_energy] = mode.seen
    assert counts[False] > 0
    assert counts[True] == 0


def test_bad_input_is_rejected_as_in_forward():
    positions, charges, cell, pairs, _ = system()
    calculator = CALCULATORS["pme"]()
    distances = torch.ones(len(pairs), dtype=DTYPE)
    with pytest.raises(ValueError, match="charges"):
        calculator.energy(charges[:-1], cell, positions, pairs, distances)


@requires_compile
def test_compiled_energy_equals_eager():
    positions, charges, cell, pairs, shifts = system()
    calculator = CALCULATORS["p3m-fixed"]()
    function = _energy_function(calculator, pairs, shifts, True)
    compiled = torch.compile(function, fullgraph=True)
    results = []
    for run in (function, compiled):
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
        energy = run(*inputs)
        results.append((energy, *torch.autograd.grad(energy, inputs)))
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["pme-fixed", "p3m-fixed"])
def test_energy_step_reads_no_data_on_the_host(name):
    """On the meta device (tensors without data) any host read raises: with a
    fixed mesh the energy and its gradients need none (CUDA-graph capture)."""
    positions, charges, cell, pairs, shifts = system()
    calculator = CALCULATORS[name]().to("meta")
    moved = [t.to("meta") for t in (positions, charges, cell, pairs, shifts)]
    function = _energy_function(calculator, moved[3], moved[4], True)
    inputs = [t.clone().requires_grad_(True) for t in moved[:3]]
    energy = function(*inputs)
    grads = torch.autograd.grad(energy, inputs)
    assert energy.device.type == "meta"
    assert [g.shape for g in grads] == [t.shape for t in inputs]


@pytest.mark.parametrize("name", ["pme", "p3m", "pme-fixed"])
def test_gradgradcheck_at_a_fixed_cell(name):
    """Forces in a loss with the cell fixed: the mesh part's second derivatives come
    from one filtered mesh (no kernel gradient is needed)."""
    positions, charges, cell, pairs, shifts = system(n=6, channels=2)
    calculator = CALCULATORS[name]()
    energy = _energy_function(calculator, pairs, shifts, True)

    def function(positions, charges):
        return energy(positions, charges, cell)

    inputs = tuple(t.clone().requires_grad_(True) for t in (positions, charges))
    assert gradgradcheck(function, inputs)


def _training_step(
    calculator, pairs, shifts, use_energy, positions, charges, cell, stress=False
):
    """Gradients of ``E² + Σ F² (+ Σ σ², σ = ∂E/∂cell)`` with respect to positions
    and charges (and the cell)."""
    pos = positions.clone().requires_grad_(True)
    q = charges.clone().requires_grad_(True)
    cel = cell.clone().requires_grad_(stress)
    energy = _energy_function(calculator, pairs, shifts, use_energy)(pos, q, cel)
    inputs = (pos, cel) if stress else (pos,)
    derivatives = torch.autograd.grad(energy, inputs, create_graph=True)
    loss = energy.square() + sum(d.square().sum() for d in derivatives)
    return torch.autograd.grad(loss, (pos, q, cel) if stress else (pos, q))


@pytest.mark.parametrize("name", ["pme", "p3m"])
@pytest.mark.parametrize("stress", [False, True])
def test_forces_in_a_loss_equal_the_potentials_path_with_fewer_transforms(name, stress):
    positions, charges, cell, pairs, shifts = system()
    calculator = CALCULATORS[name]()
    results, counts = [], []
    for use_energy in (False, True):
        data = (positions, charges, cell)
        with _Transforms("fft_r2c") as mode:
            step = _training_step(calculator, pairs, shifts, use_energy, *data, stress)
        results.append(step)
        counts.append(mode.seen)
    for fast, plain in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(fast, plain, atol=1e-12, rtol=1e-12)
    # forward, the spectrum and filtered mesh of the forces' graph, its backward:
    # one forward transform each (the inverse of several channels takes two steps)
    assert counts[1] == 3 < counts[0]
