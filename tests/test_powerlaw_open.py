"""Inverse power laws ``1/r^p`` in wires and exact slabs: PME and P3M against
the independent NumPy Ewald sums of ``tests/reference_powerlaw_open.py``,
gradients, TorchScript and the exponents that are refused."""

import numpy as np
import open_systems
import pytest
import test_slabs
import test_wires
import torch
from reference_powerlaw_open import powerlaw_slab, powerlaw_wire
from torch.autograd import gradcheck

from torchpme import InversePowerLawPotential, P3MCalculator, PMECalculator

SMEARING = 0.8
# (calculator, nodes, mesh spacing, relative tolerance)
ACCURATE = [(PMECalculator, 7, 0.12, 1e-8), (P3MCalculator, 5, 0.12, 1e-8)]


def _calculator(method, exponent, nodes=5, spacing=0.3):
    return method(
        InversePowerLawPotential(exponent=exponent, smearing=SMEARING),
        mesh_spacing=spacing,
        interpolation_nodes=nodes,
        # refused for 1/r², which wires take
        slab_method="exact" if exponent > 2 else "yeh-berkowitz",
    )


def _reference(system, exponent):
    positions, charges, cell, periodic = system
    if periodic.count(True) == 1:
        axis = periodic.index(True)
        result = powerlaw_wire(positions, charges[:, 0], cell[axis], exponent)
    else:
        axis = periodic.index(False)
        a1, a2 = cell[(axis + 1) % 3], cell[(axis + 2) % 3]
        result = powerlaw_slab(positions, charges[:, 0], a1, a2, exponent)
    energy, potentials, forces = result
    return energy, forces, potentials


PME, P3M = ACCURATE


@pytest.mark.parametrize(
    ("accurate", "exponent", "axis"),
    [(PME, 2, 0), (PME, 3, 2), (PME, 6, 0), (P3M, 2, 2), (P3M, 6, 0)],
)
def test_wires_equal_the_1d_sum(accurate, exponent, axis):
    """10 charged ions around a tilted wire axis: energy, forces and
    potentials within ``tolerance`` of the scale ``Σ|q_i| |φ|``."""
    method, nodes, spacing, tolerance = accurate
    system = test_wires._wire(10, "charged", axis=axis, seed=3)
    calculator = _calculator(method, exponent, nodes, spacing)
    result = open_systems.evaluate(calculator, system)
    open_systems.assert_within(
        result, _reference(system, exponent), system[1], tolerance
    )


@pytest.mark.parametrize(
    ("accurate", "exponent", "shape"),
    [
        (PME, 3, "triclinic"),
        (PME, 4, "orthorhombic"),
        (PME, 6, "triclinic"),
        (P3M, 3, "orthorhombic"),
        (P3M, 6, "triclinic"),
    ],
)
def test_slabs_equal_the_2d_sum(accurate, exponent, shape):
    """12 charged ions in a slab open along axis 0, plane off the Cartesian
    ones: energy, forces and potentials within ``tolerance``."""
    method, nodes, spacing, tolerance = accurate
    system = test_slabs._slab(12, shape, "charged", axis=0, seed=5)
    calculator = _calculator(method, exponent, nodes, spacing)
    result = open_systems.evaluate(calculator, system)
    open_systems.assert_within(
        result, _reference(system, exponent), system[1], tolerance
    )


@pytest.mark.parametrize(
    "system",
    [
        lambda: test_wires._wire(4, "charged", seed=1, width=1.5),
        lambda: test_slabs._slab(4, "triclinic", "charged", seed=1),
    ],
)
def test_gradcheck(system):
    """Positions and charges, through the mixed kernel of ``1/r^4``."""
    positions, charges, cell, periodic = system()
    calculator = _calculator(PMECalculator, 4, nodes=4, spacing=0.6)
    pairs, images = open_systems.pairs(positions, cell, periodic)
    cell_t, periodic_t = torch.tensor(cell), torch.tensor(periodic)

    def energy(q, r):
        distances = torch.linalg.norm(r[pairs[:, 1]] - r[pairs[:, 0]] + images, dim=1)
        return calculator.energy(q, cell_t, r, pairs, distances, periodic=periodic_t)

    q = torch.tensor(charges, requires_grad=True)
    r = torch.tensor(positions, requires_grad=True)
    assert gradcheck(energy, (q, r))


@pytest.mark.parametrize(
    "system",
    [
        lambda: test_wires._wire(6, "charged", seed=2),
        lambda: test_slabs._slab(6, "orthorhombic", "charged", seed=2),
    ],
)
def test_torchscript_equals_eager(system):
    calculator = _calculator(P3MCalculator, 6)
    torch.testing.assert_close(*open_systems.scripted_and_eager(calculator, system()))


def test_the_2d_sum_of_an_inverse_square_is_refused():
    """``Σ 1/r²`` over a plane diverges as the logarithm of its extent."""
    potential = InversePowerLawPotential(exponent=2, smearing=1.0)
    with pytest.raises(ValueError, match=r"`slab_method`.*exponent 2"):
        PMECalculator(potential, 0.5, slab_method="exact")


def test_a_charged_helix_of_inverse_squares_is_analytic():
    """``Σ_m 1/(ρ² + (z + mL)²) = (π/Lρ) sinh(2πρ/L) / (cosh(2πρ/L) − cos(2πz/L))``
    (a partial-fraction sum) and ``Σ_{m≠0} 1/(mL)² = π²/3L²`` give the
    potentials of charges on a helix around a wire exactly."""
    length, radius, n_atoms = 5.0, 1.3, 6
    turns = np.arange(n_atoms) / n_atoms
    angle = 2.0 * np.pi * 1.5 * turns
    positions = np.c_[
        radius * np.cos(angle), radius * np.sin(angle), length * turns
    ] + [2.0, 2.0, 0.0]
    charges = np.linspace(-1.0, 2.0, n_atoms)[:, None]
    cell = np.diag([4.0, 4.0, length])
    expected = np.full(n_atoms, np.pi**2 / (3.0 * length**2)) * charges[:, 0]
    for i in range(n_atoms):
        for j in range(n_atoms):
            if i == j:
                continue
            d = positions[i] - positions[j]
            rho, z = np.hypot(d[0], d[1]), d[2]
            x = 2.0 * np.pi / length
            expected[i] += charges[j, 0] * (
                np.pi / (length * rho) * np.sinh(x * rho)
                / (np.cosh(x * rho) - np.cos(x * z))
            )  # fmt: skip
    calculator = _calculator(PMECalculator, 2, nodes=7, spacing=0.12)
    _, _, potentials = open_systems.evaluate(
        calculator, (positions, charges, cell, [False, False, True])
    )
    np.testing.assert_allclose(potentials, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("exponent", [4, 6])
@pytest.mark.parametrize(
    "system",
    [
        lambda: test_wires._wire(8, "charged", seed=7),
        lambda: test_slabs._slab(8, "triclinic", "charged", seed=7),
    ],
    ids=["wire", "slab"],
)
def test_float32(system, exponent):
    """In float32 the kernel at zero displacement is its limit, not 0/0."""
    calculator = _calculator(PMECalculator, exponent, nodes=5, spacing=0.3)
    result, expected = open_systems.float32_and_float64(calculator, system())
    assert result.dtype == torch.float32
    scale = float(expected.abs().max())
    torch.testing.assert_close(result.double(), expected, rtol=0, atol=1e-4 * scale)
