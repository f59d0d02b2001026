"""Calculators against independent references: Madelung constants, a NumPy Ewald sum,
direct image sums, finite differences and gradcheck."""

import math

import numpy as np
import pytest
import torch
from reference import (
    MADELUNG,
    crystal,
    ewald_potentials,
    inverse_power_potentials,
    madelung_energy,
    neighbor_list,
    to_torch,
    torch_neighbors,
)

import torchpme
from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)

DTYPE = torch.float64


def make_calculator(method, smearing, exponent=1, fine=True):
    """A calculator converged to about 1e-9 relative for the test crystals."""
    if exponent == 1:
        potential = CoulombPotential(smearing=smearing)
    else:
        potential = InversePowerLawPotential(exponent=exponent, smearing=smearing)
    if method == "ewald":
        return EwaldCalculator(potential, lr_wavelength=smearing / 3.0)
    if method == "pme":
        return PMECalculator(
            potential, mesh_spacing=smearing / 3.0, interpolation_nodes=7
        )
    return P3MCalculator(potential, mesh_spacing=smearing / 8.0, interpolation_nodes=5)


def energy(calculator, positions, charges, cell, cutoff, periodic=None):
    indices, distances = torch_neighbors(positions, cell, cutoff)
    potentials = calculator(charges, cell, positions, indices, distances, periodic)
    return (charges * potentials).sum(), potentials


@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
@pytest.mark.parametrize("name", list(MADELUNG))
def test_madelung_constants(method, name):
    positions, charges, cell, _, _ = crystal(name)
    positions, charges, cell = to_torch(positions, charges[:, None], cell)
    cutoff = 2.0
    smearing = cutoff / 6.5
    calculator = make_calculator(method, smearing)
    value, _ = energy(calculator, positions, charges, cell, cutoff)
    tolerance = {"ewald": 1e-9, "pme": 1e-6, "p3m": 1e-6}[method]
    # the published constants of these two carry fewer digits
    tolerance = max(tolerance, {"wurtzite": 1e-9, "fluorite": 5e-7}.get(name, 0.0))
    assert float(value) == pytest.approx(madelung_energy(name), rel=tolerance)


def test_madelung_conventional_and_rotated_cell():
    """Conventional 8-atom rock salt in a rotated, left-handed frame."""
    positions, charges, cell, _, _ = crystal("rocksalt", primitive=False)
    angle = 0.4
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0.0, 0.0, -1.0],
        ]
    )
    positions, charges, cell = to_torch(
        positions @ rotation.T, charges[:, None], cell @ rotation.T
    )
    for method in ["ewald", "pme", "p3m"]:
        value, _ = energy(make_calculator(method, 0.3), positions, charges, cell, 2.0)
        assert float(value) / 4 == pytest.approx(-MADELUNG["rocksalt"], rel=1e-6)


def random_system(n=8, charged=False, seed=0):
    rng = np.random.default_rng(seed)
    cell = np.array([[4.0, 0.2, 0.1], [0.5, 3.6, 0.3], [-0.4, 0.6, 4.4]])
    positions = rng.uniform(-0.2, 1.2, size=(n, 3)) @ cell  # some atoms outside
    charges = rng.normal(size=(n, 2))
    if not charged:
        charges -= charges.mean(axis=0)
    return positions, charges, cell


@pytest.mark.parametrize("charged", [False, True], ids=["neutral", "charged"])
@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_random_system_against_numpy_ewald(method, charged):
    positions, charges, cell = random_system(charged=charged)
    reference = ewald_potentials(positions, charges, cell)
    positions, charges, cell = to_torch(positions, charges, cell)
    _, potentials = energy(make_calculator(method, 0.5), positions, charges, cell, 3.5)
    tolerance = {"ewald": 1e-9, "pme": 2e-6, "p3m": 2e-6}[method]
    np.testing.assert_allclose(potentials.numpy(), reference, atol=tolerance)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_charged_result_independent_of_smearing(method):
    positions, charges, cell = random_system(charged=True, seed=3)
    positions, charges, cell = to_torch(positions, charges, cell)
    results = [
        energy(make_calculator(method, s), positions, charges, cell, 3.8)[1]
        for s in (0.45, 0.6)
    ]
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_inverse_power_law_against_direct_sum(method):
    """1/r^6 converges absolutely: a direct image sum is the reference."""
    positions, charges, cell = random_system(seed=5)
    reference = inverse_power_potentials(positions, charges, cell, 6, r_max=40.0)
    positions, charges, cell = to_torch(positions, charges, cell)
    calculator = make_calculator(method, 0.5, exponent=6)
    _, potentials = energy(calculator, positions, charges, cell, 3.5)
    np.testing.assert_allclose(potentials.numpy(), reference, atol=5e-6)


@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_forces_and_stress_by_finite_differences(method):
    positions, charges, cell = random_system(n=6, seed=7)
    positions, charges, cell = to_torch(positions, charges, cell)
    calculator = make_calculator(method, 0.6)

    def total(pos, cel):
        return energy(calculator, pos, charges, cel, 3.8)[0]

    positions.requires_grad_(True)
    cell.requires_grad_(True)
    value = total(positions, cell)
    grad_positions, grad_cell = torch.autograd.grad(value, (positions, cell))
    step = 1e-5
    with torch.no_grad():
        for atom, axis in [(0, 0), (3, 2), (5, 1)]:
            shift = torch.zeros_like(positions)
            shift[atom, axis] = step
            numeric = (
                total(positions + shift, cell) - total(positions - shift, cell)
            ) / (2 * step)
            assert float(grad_positions[atom, axis]) == pytest.approx(
                float(numeric), abs=1e-6
            )
        # strain derivative: E(cell (1+ε), positions (1+ε)) gives the virial
        for a, b in [(0, 0), (1, 2), (2, 0)]:
            strain = torch.zeros(3, 3, dtype=DTYPE)
            strain[a, b] = step
            plus = torch.eye(3, dtype=DTYPE) + strain
            minus = torch.eye(3, dtype=DTYPE) - strain
            numeric = (
                total(positions @ plus.T, cell @ plus.T)
                - total(positions @ minus.T, cell @ minus.T)
            ) / (2 * step)
            analytic = (positions.T @ grad_positions + cell.T @ grad_cell)[b, a]
            assert float(analytic) == pytest.approx(float(numeric), abs=1e-6)


@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_gradcheck_positions_charges_cell(method):
    positions, charges, cell = random_system(n=3, seed=11)
    positions, charges, cell = to_torch(positions, charges, cell)
    potential = CoulombPotential(smearing=1.0)
    calculator = {
        "ewald": EwaldCalculator(potential, lr_wavelength=2.0),
        "pme": PMECalculator(potential, mesh_spacing=1.5, interpolation_nodes=4),
        "p3m": P3MCalculator(potential, mesh_spacing=1.5, interpolation_nodes=3),
    }[method]
    pairs, shifts = neighbor_list(positions.numpy(), cell.numpy(), 3.0)
    indices, shifts = torch.from_numpy(pairs), torch.from_numpy(shifts)

    def function(pos, q, cel):
        vectors = pos[indices[:, 1]] + shifts @ cel - pos[indices[:, 0]]
        distances = torch.linalg.norm(vectors, dim=-1)
        return calculator(q, cel, pos, indices, distances)

    inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
    assert torch.autograd.gradcheck(function, inputs)


def test_direct_calculator_half_and_full_lists_agree():
    positions, charges, cell = random_system(seed=2)
    positions, charges, cell = to_torch(positions, charges, cell)
    half = torch_neighbors(positions, cell, 4.0, full=False)
    full = torch_neighbors(positions, cell, 4.0, full=True)
    potential = CoulombPotential()
    a = Calculator(potential)(charges, cell, positions, *half)
    b = Calculator(potential, full_neighbor_list=True)(charges, cell, positions, *full)
    torch.testing.assert_close(a, b)
    # direct pair sum, written out
    pos, q = positions.numpy(), charges.numpy()
    expected = np.zeros_like(q)
    for (i, j), r in zip(full[0].numpy(), full[1].numpy(), strict=True):
        expected[i] += 0.5 * q[j] / r
    np.testing.assert_allclose(a.numpy(), expected, rtol=1e-12)
    assert pos.shape == (8, 3)


def test_float32_follows_inputs():
    positions, charges, cell, _, _ = crystal("cscl")
    positions, charges, cell = to_torch(positions, charges[:, None], cell)
    for method in ["ewald", "pme", "p3m"]:
        calculator = make_calculator(method, 0.99 / 5)
        value64, _ = energy(calculator, positions, charges, cell, 0.99)
        p32, q32, c32 = (t.float() for t in (positions, charges, cell))
        value32, potentials32 = energy(calculator, p32, q32, c32, 0.99)
        assert potentials32.dtype == torch.float32
        assert float(value32) == pytest.approx(float(value64), rel=1e-5)


def test_sanity_value_of_the_spec():
    """API.md §11.4: CsCl with σ = 0.99/5 and cutoff 0.99."""
    positions, charges, cell, _, _ = crystal("cscl")
    positions, charges, cell = to_torch(positions, charges[:, None], cell)
    smearing = 0.99 / 5
    potential = CoulombPotential(smearing=smearing)
    calculators = [
        EwaldCalculator(potential, lr_wavelength=smearing / 2),
        PMECalculator(potential, mesh_spacing=smearing / 8),
        P3MCalculator(potential, mesh_spacing=smearing / 8),
    ]
    for calculator in calculators:
        value, potentials = energy(calculator, positions, charges, cell, 0.99)
        assert float(value) == pytest.approx(-2.03536, abs=2e-5)
        assert float(potentials[0, 0]) == pytest.approx(-1.01768, abs=2e-5)


def test_value_checks_switch():
    positions, charges, cell = random_system(seed=1)
    positions, charges, cell = to_torch(positions, charges, cell)
    indices, distances = torch_neighbors(positions, cell, 3.0)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=1.0)
    bad = positions.clone()
    bad[0, 0] = float("nan")
    torchpme.set_value_checks(True)
    try:
        with pytest.raises(ValueError, match="positions"):
            calculator(charges, cell, bad, indices, distances)
        with pytest.raises(ValueError, match="neighbor_indices"):
            calculator(charges, cell, positions, indices + 100, distances)
    finally:
        torchpme.set_value_checks(False)
