"""The PME/P3M filter as an explicit value: ``mesh_filter(cell)`` passed back as
``mesh_filter=`` gives the results computed without it (values and gradients),
is refused where it cannot be the filter of the mesh in use, and calculators keep
no state between calls."""

import pytest
import torch

import torchpme

CELL = torch.tensor(
    [[6.0, 0.0, 0.0], [0.5, 5.5, 0.0], [0.2, 0.3, 6.5]], dtype=torch.float64
)
POSITIONS = torch.tensor(
    [[0.1, 0.2, 0.3], [3.0, 2.5, 3.1], [1.0, 4.0, 5.0]], dtype=torch.float64
)
CHARGES = torch.tensor([[1.0], [-0.4], [-0.6]], dtype=torch.float64)
NO_PAIRS = (torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=torch.float64))


def _calculator(kind, smearing=1.2):
    potential = torchpme.CoulombPotential(smearing=smearing)
    if kind == "pme":
        return torchpme.PMECalculator(potential, mesh_spacing=0.6).double()
    return torchpme.P3MCalculator(potential, mesh_spacing=0.6).double()


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_given_filter_gives_the_same_values_and_gradients(kind):
    calculator = _calculator(kind)
    kernel = calculator.mesh_filter(CELL)
    results = []
    for given in (None, kernel):
        positions = POSITIONS.clone().requires_grad_(True)
        potentials = calculator(CHARGES, CELL, positions, *NO_PAIRS, mesh_filter=given)
        energy = calculator.energy(
            CHARGES, CELL, positions, *NO_PAIRS, mesh_filter=given
        )
        torch.testing.assert_close(energy, (CHARGES * potentials).sum())
        results.append((potentials, *torch.autograd.grad(energy, positions)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_filter_of_another_mesh_is_refused(kind):
    calculator = _calculator(kind)
    other = calculator.mesh_filter(2.0 * CELL)  # a finer mesh
    with pytest.raises(ValueError, match="mesh_filter"):
        calculator(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=other)
    single = calculator.mesh_filter(CELL).float()
    with pytest.raises((TypeError, ValueError), match="mesh_filter"):
        calculator.energy(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=single)


@pytest.mark.parametrize(
    "calculator",
    [
        torchpme.Calculator(torchpme.CoulombPotential()),
        torchpme.EwaldCalculator(torchpme.CoulombPotential(smearing=1.0), 0.5),
    ],
)
def test_calculators_without_a_mesh_refuse_a_filter(calculator):
    kernel = torch.ones((4, 4, 3), dtype=torch.float64)
    calculator = calculator.double()
    with pytest.raises(ValueError, match="mesh_filter"):
        calculator(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=kernel)
    with pytest.raises(ValueError, match="mesh_filter"):
        calculator.energy(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=kernel)


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_calls_keep_no_state(kind):
    """A calculator used on one cell, then another, then the first again, gives
    what fresh calculators give (nothing of an earlier call is reused)."""
    calculator = _calculator(kind)
    cells = [CELL, 1.05 * CELL, CELL]
    for cell in cells:
        result = calculator(CHARGES, cell, POSITIONS, *NO_PAIRS)
        fresh = _calculator(kind)(CHARGES, cell, POSITIONS, *NO_PAIRS)
        torch.testing.assert_close(result, fresh, rtol=0, atol=0)
    assert set(vars(calculator)) == set(vars(_calculator(kind)))


def test_gradient_reaches_a_learnable_smearing_through_a_given_filter():
    smearing = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    calculator = _calculator("pme")
    calculator.potential.smearing = smearing
    kernel = calculator.mesh_filter(CELL)
    energy = calculator.energy(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=kernel)
    (grad,) = torch.autograd.grad(energy, smearing)
    step = 1e-6
    values = []
    for delta in (step, -step):
        potential = torchpme.CoulombPotential(smearing=1.2 + delta)
        shifted = torchpme.PMECalculator(potential, mesh_spacing=0.6).double()
        values.append(float(shifted.energy(CHARGES, CELL, POSITIONS, *NO_PAIRS)))
    assert float(grad) == pytest.approx((values[0] - values[1]) / (2 * step), rel=1e-6)


def test_scripted_calculator_takes_its_own_filter():
    calculator = _calculator("p3m")
    scripted = torch.jit.script(calculator)
    kernel = scripted.mesh_filter(CELL)
    torch.testing.assert_close(kernel, calculator.mesh_filter(CELL))
    result = scripted(CHARGES, CELL, POSITIONS, *NO_PAIRS, mesh_filter=kernel)
    expected = calculator(CHARGES, CELL, POSITIONS, *NO_PAIRS)
    torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_batches_take_one_filter_per_system(kind):
    """Systems on two mesh sizes: the filters given (one per system, stacked per
    group) give what the filters computed inside give, for both batch methods."""
    cells = torch.stack([CELL, 1.6 * CELL, 1.05 * CELL])
    positions = torch.cat([POSITIONS, 1.6 * POSITIONS, 1.05 * POSITIONS])
    charges = torch.cat([CHARGES, CHARGES, CHARGES])
    system_index = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    calculator = _calculator(kind)
    filters = [calculator.mesh_filter(cell) for cell in cells]
    assert filters[0].shape != filters[1].shape  # two groups
    arguments = (charges, cells, positions, system_index, *NO_PAIRS)
    for method in (calculator.forward_batch, calculator.energy_batch):
        expected = method(*arguments)
        result = method(*arguments, mesh_filters=filters)
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="mesh_filters"):
        calculator.energy_batch(*arguments, mesh_filters=filters[:2])
    swapped = [filters[1], filters[0], filters[2]]
    with pytest.raises(ValueError, match="mesh_filter"):
        calculator.forward_batch(*arguments, mesh_filters=swapped)
    ewald = torchpme.EwaldCalculator(torchpme.CoulombPotential(1.2), 0.5).double()
    with pytest.raises(ValueError, match="mesh_filter"):
        ewald.energy_batch(*arguments, mesh_filters=filters)
