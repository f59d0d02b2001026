"""``torchpme.neighbors.PairList``: a neighbour list held by the caller and passed
wherever ``neighbor_indices`` go, with the results of the plain index tensor."""

import pytest
import torch
from reference import requires_compile

import torchpme
from torchpme.neighbors import PairList, compute_neighbors, pair_distances

DTYPE = torch.float64


def _system(n_atoms=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    cell = torch.tensor(
        [[5.0, 0.0, 0.0], [0.6, 5.2, 0.0], [0.3, -0.4, 5.5]], dtype=DTYPE
    )
    positions = torch.rand((n_atoms, 3), dtype=DTYPE, generator=generator) @ cell
    charges = torch.randn((n_atoms, 2), dtype=DTYPE, generator=generator)
    return positions, charges - charges.mean(0), cell


CALCULATORS = {
    "direct": lambda: torchpme.Calculator(torchpme.CoulombPotential()),
    "ewald": lambda: torchpme.EwaldCalculator(torchpme.CoulombPotential(1.0), 0.5),
    "pme": lambda: torchpme.PMECalculator(torchpme.CoulombPotential(1.0), 0.5),
    "p3m": lambda: torchpme.P3MCalculator(torchpme.CoulombPotential(1.0), 0.5),
    "pme-power": lambda: torchpme.PMECalculator(
        torchpme.InversePowerLawPotential(2, smearing=1.0), 0.5
    ),
}


def test_compute_neighbors_returns_a_pair_list_on_request():
    positions, _, cell = _system()
    indices, distances, shifts = compute_neighbors(
        positions, cell, 2.5, return_shifts=True
    )
    pairs, same_distances = compute_neighbors(positions, cell, 2.5, as_pair_list=True)
    assert isinstance(pairs, PairList) and len(pairs) == len(indices)
    assert torch.equal(pairs.indices, indices) and torch.equal(pairs.shifts, shifts)
    torch.testing.assert_close(same_distances, distances, rtol=0, atol=0)
    torch.testing.assert_close(
        pair_distances(positions, cell, pairs), distances, rtol=0, atol=0
    )


@pytest.mark.parametrize("name", list(CALCULATORS))
def test_calculators_take_a_pair_list(name):
    positions, charges, cell = _system()
    indices, _, shifts = compute_neighbors(positions, cell, 2.5, return_shifts=True)
    pairs = PairList(indices, shifts)
    calculator = CALCULATORS[name]().double()
    results = []
    for neighbors in (indices, pairs):
        moving = positions.clone().requires_grad_(True)
        if neighbors is pairs:
            distances = pair_distances(moving, cell, pairs)
        else:
            distances = pair_distances(moving, cell, indices, shifts)
        potentials = calculator(charges, cell, moving, neighbors, distances)
        energy = calculator.energy(charges, cell, moving, neighbors, distances)
        (forces,) = torch.autograd.grad(energy, moving)
        results.append((potentials, energy, forces))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_batches_take_a_pair_list():
    systems = [_system(12, seed) for seed in (1, 2)]
    positions = torch.cat([p for p, _, _ in systems])
    charges = torch.cat([q for _, q, _ in systems])
    cells = torch.stack([c for _, _, c in systems])
    system_index = torch.tensor([0] * 12 + [1] * 12)
    lists = [compute_neighbors(p, c, 2.5, return_shifts=True) for p, _, c in systems]
    indices = torch.cat([lists[0][0], lists[1][0] + 12])
    distances = torch.cat([lists[0][1], lists[1][1]])
    calculator = CALCULATORS["pme"]().double()
    expected = calculator.forward_batch(
        charges, cells, positions, system_index, indices, distances
    )
    result = calculator.forward_batch(
        charges, cells, positions, system_index, PairList(indices), distances
    )
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_dipole_calculator_takes_a_pair_list():
    positions, _, cell = _system()
    dipoles = torch.randn((len(positions), 3), dtype=DTYPE)
    indices, _, shifts = compute_neighbors(positions, cell, 2.5, return_shifts=True)
    vectors = (
        positions[indices[:, 1]] - positions[indices[:, 0]] + shifts.to(DTYPE) @ cell
    )
    calculator = torchpme.CalculatorDipole(
        torchpme.PotentialDipole(smearing=1.0), full_neighbor_list=False,
        lr_wavelength=0.8,
    ).double()  # fmt: skip
    expected = calculator(dipoles, cell, positions, indices, vectors)
    result = calculator(dipoles, cell, positions, PairList(indices, shifts), vectors)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_bad_lists_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="indices"):
        PairList(torch.zeros((4, 3), dtype=torch.int64))
    with pytest.raises(ValueError, match="indices"):
        PairList(torch.zeros((4, 2)))
    with pytest.raises(ValueError, match="shifts"):
        PairList(torch.zeros((4, 2), dtype=torch.int64), torch.zeros((3, 3)))
    positions, _, cell = _system()
    pairs = PairList(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="shifts"):
        pair_distances(positions, cell, pairs, torch.zeros((1, 3)))
    with pytest.raises(ValueError, match="shifts"):
        pair_distances(positions, cell, torch.tensor([[0, 1]]))


@pytest.mark.parametrize("name", list(CALCULATORS))
@pytest.mark.parametrize("periodic", [None, [True, True, False]])
def test_potentials_are_half_the_charge_gradient_of_the_energy(name, periodic):
    """``E = qᵀ B q`` with ``B`` symmetric (pair sums over symmetric lists, mesh,
    corrections), so ``∂E/∂q = 2 V``: the front ends read the potentials off the
    energy's backward pass. Net charge and, for a slab, the slab correction."""
    positions, charges, cell = _system()
    charges = charges + 0.3  # charged
    cell = cell.clone()
    if periodic is not None:
        cell[2] = torch.tensor([0.0, 0.0, 30.0], dtype=DTYPE)
        periodic = torch.tensor(periodic)
    indices, distances = compute_neighbors(positions, cell, 2.5)
    calculator = CALCULATORS[name]().double()
    q = charges.clone().requires_grad_(True)
    energy = calculator.energy(q, cell, positions, indices, distances, periodic)
    (grad,) = torch.autograd.grad(energy, q)
    potentials = calculator(charges, cell, positions, indices, distances, periodic)
    torch.testing.assert_close(0.5 * grad, potentials, rtol=1e-12, atol=1e-13)


@requires_compile
def test_a_pair_list_goes_through_torch_compile():
    """``torch.compile(fullgraph=True)`` of a step that takes a PairList (its columns
    only: no work buffer is handed between traced steps): the eager numbers."""
    positions, charges, cell = _system()
    calculator = torchpme.PMECalculator(
        torchpme.CoulombPotential(1.0), 0.5, fixed_mesh=[12, 12, 12]
    ).double()
    pairs, _ = compute_neighbors(positions, cell, 2.5, as_pair_list=True)

    def step(moving):
        distances = pair_distances(moving, cell, pairs)
        return calculator.energy(charges, cell, moving, pairs, distances)

    results = []
    for function in (step, torch.compile(step, fullgraph=True)):
        moving = positions.clone().requires_grad_(True)
        energy = function(moving)
        results.append((energy, *torch.autograd.grad(energy, moving)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
