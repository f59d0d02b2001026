"""The PME/P3M filter cache never changes a result: any change of what the filter
depends on (cell, mesh, potential parameters, filter settings) is a cache miss, and
nothing is cached where it cannot be compared (gradients through the filter)."""

import pytest
import torch

import torchpme

CELL = torch.tensor([[6.0, 0.0, 0.0], [0.5, 5.5, 0.0], [0.2, 0.3, 6.5]])
POSITIONS = torch.tensor([[0.1, 0.2, 0.3], [3.0, 2.5, 3.1], [1.0, 4.0, 5.0]])
CHARGES = torch.tensor([[1.0], [-0.4], [-0.6]])


def _calculator(kind, smearing=1.2, exponent=1):
    if exponent == 1:
        potential = torchpme.CoulombPotential(smearing=smearing)
    else:
        potential = torchpme.InversePowerLawPotential(exponent, smearing=smearing)
    if kind == "pme":
        calculator = torchpme.PMECalculator(potential, mesh_spacing=0.6)
    else:
        calculator = torchpme.P3MCalculator(potential, mesh_spacing=0.6)
    return calculator.to(torch.float64)


def _run(calculator, cell=CELL, positions=POSITIONS):
    empty = torch.zeros((0, 2), dtype=torch.int64)
    return calculator(
        CHARGES.double(),
        cell.double(),
        positions.double(),
        empty,
        torch.zeros(0, dtype=torch.float64),
    )


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_cache_hit_for_unchanged_inputs(kind):
    calculator = _calculator(kind)
    first = _run(calculator)
    (cached,) = calculator._filter_cache.values()
    second = _run(calculator, positions=POSITIONS + 0.3)
    assert len(calculator._filter_cache) == 1
    assert next(iter(calculator._filter_cache.values())) is cached
    fresh = _run(_calculator(kind), positions=POSITIONS + 0.3)
    assert torch.equal(second, fresh)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("kind", ["pme", "p3m"])
def test_changes_invalidate_the_cache(kind):
    calculator = _calculator(kind)
    _run(calculator)
    # a new cell
    cell = CELL * 1.05
    assert torch.equal(_run(calculator, cell=cell), _run(_calculator(kind), cell=cell))
    # a potential parameter changed in place
    calculator.potential.smearing.fill_(0.9)
    assert torch.equal(_run(calculator), _run(_calculator(kind, smearing=0.9)))
    calculator.potential.prefactor.fill_(2.0)
    expected = 2.0 * _run(_calculator(kind, smearing=0.9))
    assert torch.allclose(_run(calculator), expected, rtol=1e-14, atol=0.0)
    # another mesh
    calculator.mesh_spacing = 0.9
    reference = _calculator(kind, smearing=0.9)
    reference.mesh_spacing = 0.9
    assert torch.allclose(_run(calculator), 2.0 * _run(reference), rtol=1e-14)


def test_p3m_filter_settings_invalidate_the_cache():
    calculator = _calculator("p3m")
    _run(calculator)
    calculator.kspace_filter.mode = 1
    reference = _calculator("p3m")
    reference.kspace_filter.mode = 1
    assert torch.equal(_run(calculator), _run(reference))


def test_inverse_power_law_is_cached_per_exponent():
    calculator = _calculator("pme", exponent=2)
    _run(calculator)
    assert hasattr(calculator, "_filter_cache")
    assert torch.equal(_run(calculator), _run(_calculator("pme", exponent=2)))


def test_no_cache_when_the_filter_needs_a_gradient():
    calculator = _calculator("pme")
    cell = CELL.double().clone().requires_grad_(True)
    energy = (CHARGES.double() * _run(calculator, cell=cell)).sum()
    assert not hasattr(calculator, "_filter_cache")
    (grad,) = torch.autograd.grad(energy, cell)
    assert grad.abs().max() > 0
    smearing = torch.nn.Parameter(torch.tensor(1.2, dtype=torch.float64))
    calculator.potential.smearing = smearing
    energy = (CHARGES.double() * _run(calculator)).sum()
    assert not hasattr(calculator, "_filter_cache")
    (grad,) = torch.autograd.grad(energy, smearing)
    assert grad.abs() > 0


def test_combined_potential_is_not_cached():
    potential = torchpme.CombinedPotential(
        [
            torchpme.CoulombPotential(smearing=1.2),
            torchpme.InversePowerLawPotential(2, smearing=1.2),
        ],
        smearing=1.2,
    )
    calculator = torchpme.PMECalculator(potential, mesh_spacing=0.6).double()
    _run(calculator)
    assert not hasattr(calculator, "_filter_cache")


def test_cache_keeps_recent_filters_up_to_its_byte_budget(monkeypatch):
    from torchpme._core import defaults

    calculator = _calculator("pme")
    scales = [1.0 + 0.01 * step for step in range(10)]
    for scale in scales:
        _run(calculator, cell=CELL * scale)
    # small filters: all ten fit in the budget
    assert len(calculator._filter_cache) == len(scales)
    one = next(iter(calculator._filter_cache.values())).nbytes
    assert 10 * one <= defaults.FILTER_CACHE_BYTES

    # a budget of two and a half filters keeps the two newest
    monkeypatch.setattr(defaults, "FILTER_CACHE_BYTES", 2 * one + one // 2)
    _run(calculator, cell=CELL * 1.095)
    assert len(calculator._filter_cache) == 2
    # the oldest were dropped, the newest is served from the cache and is right
    fresh = _run(_calculator("pme"), cell=CELL * 1.095)
    assert torch.equal(_run(calculator, cell=CELL * 1.095), fresh)
    assert len(calculator._filter_cache) == 2


def test_cache_keeps_the_newest_filter_even_above_its_budget(monkeypatch):
    """A cell that changes every step (NPT) keeps one filter, however large."""
    from torchpme._core import defaults

    monkeypatch.setattr(defaults, "FILTER_CACHE_BYTES", 1)
    calculator = _calculator("p3m")
    for scale in (1.0, 1.1, 1.2):
        _run(calculator, cell=CELL * scale)
        assert len(calculator._filter_cache) == 1
    (kept,) = calculator._filter_cache.values()
    assert _run(calculator, cell=CELL * 1.2) is not None
    assert next(iter(calculator._filter_cache.values())) is kept


def test_batches_use_the_cache():
    calculator = _calculator("p3m")
    cells = torch.stack([CELL, CELL * 1.1]).double()
    positions = torch.cat([POSITIONS, POSITIONS + 0.5]).double()
    charges = torch.cat([CHARGES, CHARGES]).double()
    system_index = torch.tensor([0, 0, 0, 1, 1, 1])
    empty = torch.zeros((0, 2), dtype=torch.int64)

    def run(calc):
        return calc.forward_batch(
            charges,
            cells,
            positions,
            system_index,
            empty,
            torch.zeros(0, dtype=torch.float64),
        )

    first = run(calculator)
    assert len(calculator._filter_cache) == 1
    assert torch.equal(run(calculator), first)
    assert torch.equal(first, run(_calculator("p3m")))
