"""Physical limits: slabs in growing vacuum, point dipoles in huge cells, dipolar
lattice sums, exclusion radius behaviour, gradcheck of the direct calculators."""

import itertools
import math

import numpy as np
import pytest
import torch
from reference import neighbor_list, to_torch, torch_neighbors

from torchpme import (
    Calculator,
    CalculatorDipole,
    CoulombPotential,
    EwaldCalculator,
    PMECalculator,
    PotentialDipole,
)

DTYPE = torch.float64


def slab(height):
    """A neutral 2x2 ionic slab with a net dipole along z, in a cell of given height."""
    rng = np.random.default_rng(3)
    cell = np.diag([4.0, 4.0, height])
    positions = np.array(
        [[0.2, 0.1, 0.0], [2.1, 0.3, 0.9], [0.4, 2.2, 1.3], [2.3, 2.0, 0.4]]
    ) + rng.uniform(-0.1, 0.1, size=(4, 3))
    charges = np.array([[1.0], [-1.0], [-0.6], [0.6]])
    return to_torch(positions, charges, cell)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_slab_correction_converges_with_vacuum(method):
    """With periodic=[T, T, F] the energy no longer depends on the vacuum gap; the
    plain 3-D sum does (it sees the slab's dipole through its images)."""
    periodic = torch.tensor([True, True, False])
    results = {}
    for height in (24.0, 48.0):
        positions, charges, cell = slab(height)
        potential = CoulombPotential(smearing=0.6)
        if method == "ewald":
            calculator = EwaldCalculator(potential, lr_wavelength=0.25)
        else:
            calculator = PMECalculator(
                potential, mesh_spacing=0.25, interpolation_nodes=6
            )
        indices, distances = torch_neighbors(positions, cell, 4.5)
        corrected = calculator(charges, cell, positions, indices, distances, periodic)
        plain = calculator(charges, cell, positions, indices, distances)
        results[height] = (
            float((charges * corrected).sum()),
            float((charges * plain).sum()),
        )
    (c24, p24), (c48, p48) = results[24.0], results[48.0]
    assert abs(c24 - c48) < 2e-4 * abs(c48)
    assert abs(p24 - p48) > 10 * abs(c24 - c48)


def dipole_energy(mu1, mu2, r):
    """Analytic interaction of two point dipoles at separation vector r."""
    d = np.linalg.norm(r)
    return (mu1 @ mu2 - 3 * (mu1 @ r) * (mu2 @ r) / d**2) / d**3


def test_dipole_pair_direct_and_in_a_huge_cell():
    mu = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2]])
    positions = np.array([[1.0, 2.0, 3.0], [2.2, 1.1, 4.3]])
    separation = positions[1] - positions[0]
    expected = dipole_energy(mu[0], mu[1], separation)
    length = 60.0
    dipoles, pos, cell = to_torch(mu, positions, length * np.eye(3))
    pairs = torch.tensor([[0, 1]])
    vectors = torch.tensor(separation[None, :], dtype=DTYPE)
    direct = CalculatorDipole(PotentialDipole())(dipoles, cell, pos, pairs, vectors)
    assert float((dipoles * direct).sum()) == pytest.approx(expected, rel=1e-13)
    # Ewald with a vacuum surrounding (epsilon = 1): only the images remain, whose
    # interaction decays as L⁻⁵ (measured 6e-7 at L = 30, 1.9e-8 at L = 60); the
    # conducting boundary (epsilon = 0) differs by the surface term -2π|M|²/(3V)
    for epsilon, surface in [(1.0, 0.0), (0.0, -2 * math.pi / 3 / length**3)]:
        calculator = CalculatorDipole(
            PotentialDipole(smearing=2.0, epsilon=epsilon), lr_wavelength=0.8
        )
        result = calculator(dipoles, cell, pos, pairs, vectors)
        total_dipole = mu.sum(axis=0)
        target = expected + surface * total_dipole @ total_dipole
        assert float((dipoles * result).sum()) == pytest.approx(target, abs=4e-8)


def test_dipolar_lattice_against_direct_sphere_sum():
    """Antiparallel dipoles (M = 0): summing whole image cells within a sphere
    converges (as R⁻²) to the Ewald value."""
    cell = np.array([[3.0, 0.0, 0.0], [0.4, 3.2, 0.0], [0.2, -0.3, 2.9]])
    positions = np.array([[0.1, 0.2, 0.3], [1.6, 1.4, 1.5]])
    mu = np.array([[0.2, -0.1, 0.3], [-0.2, 0.1, -0.3]])
    reach = 20
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    translations = shifts @ cell
    translations = translations[np.linalg.norm(translations, axis=1) < 45.0]
    direct = 0.0
    for i in range(2):
        for j in range(2):
            vectors = positions[j] + translations - positions[i]
            vectors = vectors[np.linalg.norm(vectors, axis=1) > 1e-9]
            direct += 0.5 * sum(dipole_energy(mu[i], mu[j], v) for v in vectors)
    dipoles, pos, cel = to_torch(mu, positions, cell)
    pairs, image_shifts = neighbor_list(positions, cell, 4.0)
    vectors = positions[pairs[:, 1]] + image_shifts @ cell - positions[pairs[:, 0]]
    calculator = CalculatorDipole(PotentialDipole(smearing=0.5), lr_wavelength=0.15)
    result = calculator(
        dipoles, cel, pos, torch.from_numpy(pairs), torch.tensor(vectors)
    )
    assert float((dipoles * result).sum()) == pytest.approx(direct, abs=1e-6)


def test_exclusion_radius_switches_off_smoothly():
    """Inside r_ex the pair term of a direct calculator vanishes smoothly: the value
    and its derivative go to zero at r → 0 of the switched interaction."""
    radius = 2.0
    potential = CoulombPotential(exclusion_radius=radius, exclusion_degree=2)
    calculator = Calculator(potential)
    charges = torch.tensor([[1.0], [1.0]], dtype=DTYPE)
    cell = torch.eye(3, dtype=DTYPE)
    positions = torch.zeros(2, 3, dtype=DTYPE)
    pairs = torch.tensor([[0, 1]])

    def energy(r):
        distances = r.reshape(1)
        return (charges * calculator(charges, cell, positions, pairs, distances)).sum()

    for r in [1e-3, 0.2, 1.0, 1.9, 2.0, 3.0]:
        distance = torch.tensor(r, dtype=DTYPE, requires_grad=True)
        value = energy(distance)
        (slope,) = torch.autograd.grad(value, distance)
        x = min(r / radius, 1.0)
        switch = ((1 - math.cos(math.pi * x)) / 2) ** 2 if r < radius else 1.0
        assert float(value) == pytest.approx(switch / r, rel=1e-12, abs=1e-12)
        if r < 0.01:
            assert abs(float(value)) < 1e-5 and abs(float(slope)) < 1e-2


@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_gradcheck_direct_and_dipole(full):
    positions = torch.tensor(
        [[0.1, 0.2, 0.3], [1.1, 0.4, 0.2], [0.3, 1.2, 0.9]], dtype=DTYPE
    )
    cell = 3.0 * torch.eye(3, dtype=DTYPE)
    pairs, shifts = neighbor_list(positions.numpy(), cell.numpy(), 2.5, full=full)
    pairs, shifts = torch.from_numpy(pairs), torch.from_numpy(shifts)
    charges = torch.tensor([[1.0], [-0.4], [0.3]], dtype=DTYPE)
    direct = Calculator(CoulombPotential(), full_neighbor_list=full)
    dipolar = CalculatorDipole(
        PotentialDipole(smearing=0.7), full_neighbor_list=full, lr_wavelength=0.9
    )

    def monopoles(pos, q, cel):
        vectors = pos[pairs[:, 1]] + shifts @ cel - pos[pairs[:, 0]]
        return direct(q, cel, pos, pairs, torch.linalg.norm(vectors, dim=-1))

    def dipoles(pos, mu, cel):
        vectors = pos[pairs[:, 1]] + shifts @ cel - pos[pairs[:, 0]]
        return dipolar(mu, cel, pos, pairs, vectors)

    mu = torch.tensor(
        [[0.2, 0.1, -0.3], [0.0, 0.4, 0.1], [-0.2, 0.1, 0.2]], dtype=DTYPE
    )
    for function, values in [(monopoles, charges), (dipoles, mu)]:
        inputs = [t.clone().requires_grad_(True) for t in (positions, values, cell)]
        assert torch.autograd.gradcheck(function, inputs)
