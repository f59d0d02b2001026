"""Wires (one periodic direction): PME and P3M against an independent NumPy
1-D Ewald sum (``tests/reference_wire.py``), the cell's open rows irrelevant,
gradients, TorchScript, bad input. Mixed batches: ``tests/test_clusters.py``.
"""

import numpy as np
import open_systems
import pytest
import torch
from reference_wire import wire_ewald
from torch.autograd import gradcheck, gradgradcheck

from torchpme import CoulombPotential, P3MCalculator, PMECalculator

SMEARING = 0.8
# (calculator, nodes, mesh spacing, relative tolerance)
ACCURATE = [(PMECalculator, 7, 0.12, 1e-8), (P3MCalculator, 5, 0.12, 1e-8)]
PERIOD = 4.5


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _wire(n_atoms, charge="neutral", axis=2, seed=0, width=3.0):
    """``(positions, charges, cell, periodic)``: ions within ``width`` of a
    wire of period ``PERIOD`` along ``axis``; the other cell rows are a tilted
    box that bounds them; all rotated off the Cartesian axes."""
    rng = np.random.default_rng(seed)
    along = rng.uniform(0.0, PERIOD, size=n_atoms)
    across = rng.uniform(0.0, width, size=(n_atoms, 2))
    positions = np.c_[across, along]
    charges = rng.normal(size=n_atoms)
    if charge == "neutral":
        charges -= charges.mean()
    rotation = _rotation(seed + 1)
    rows = np.array([[width, 0.0, 0.0], [0.4, width, 0.0], [0.0, 0.0, PERIOD]])
    cell = np.zeros((3, 3))
    cell[(axis + 1) % 3] = rows[0] @ rotation
    cell[(axis + 2) % 3] = rows[1] @ rotation
    cell[axis] = rows[2] @ rotation
    periodic = [d == axis for d in range(3)]
    return positions @ rotation + [1.0, -2.0, 0.5], charges[:, None], cell, periodic


def _reference(system):
    positions, charges, cell, periodic = system
    energy, potentials, forces = wire_ewald(
        positions, charges[:, 0], cell[periodic.index(True)]
    )
    return energy, forces, potentials


def _calculator(method, nodes, spacing):
    return method(
        CoulombPotential(smearing=SMEARING),
        mesh_spacing=spacing,
        interpolation_nodes=nodes,
    )


@pytest.mark.parametrize(("method", "nodes", "spacing", "tolerance"), ACCURATE)
@pytest.mark.parametrize("charge", ["neutral", "charged"])
@pytest.mark.parametrize("axis", [2, 1])
def test_equals_the_1d_ewald_sum(method, nodes, spacing, tolerance, charge, axis):
    """Energy, forces and potentials of 10 random ions (net charge in the
    charged case) within ``tolerance`` of the scale ``Σ|q_i| |φ|``."""
    system = _wire(10, charge, axis=axis, seed=3)
    energy, forces, potentials = open_systems.evaluate(
        _calculator(method, nodes, spacing), system
    )
    expected = _reference(system)
    open_systems.assert_within(
        (energy, forces, potentials), expected, system[1], tolerance
    )


def test_the_open_rows_of_the_cell_do_not_matter():
    calculator = _calculator(PMECalculator, 5, 0.3)
    positions, charges, cell, periodic = _wire(8, "charged")
    reference = open_systems.evaluate(calculator, (positions, charges, cell, periodic))
    for scale in (3.0, 0.0):
        changed = cell.copy()
        changed[:2] *= scale
        result = open_systems.evaluate(
            calculator, (positions, charges, changed, periodic)
        )
        assert result[0] == pytest.approx(reference[0], rel=1e-10)
        np.testing.assert_allclose(result[1], reference[1], rtol=0, atol=1e-10)


def test_smearing_does_not_matter_for_a_charged_wire():
    """Range separation: with the line-charge convention of the k = 0 term the
    total does not depend on the smearing, also with a net charge."""
    system = _wire(8, "charged", seed=6)
    energies = []
    for smearing in (0.6, 1.1):
        calculator = PMECalculator(
            CoulombPotential(smearing=smearing),
            mesh_spacing=0.12,
            interpolation_nodes=7,
        )
        energies.append(open_systems.evaluate(calculator, system)[0])
    assert energies[0] == pytest.approx(energies[1], rel=1e-8)


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_gradcheck(method):
    """Positions, charges and the cell (the period) on a coarse mesh; second
    derivatives too."""
    calculator = _calculator(method, 4, 0.8)
    energy, arguments = open_systems.cell_energy(calculator, _wire(4, "charged"))
    assert gradcheck(energy, arguments, atol=1e-7)
    assert gradgradcheck(energy, arguments, atol=1e-6)


def test_torchscript_equals_eager():
    calculator = _calculator(PMECalculator, 5, 0.3)
    torch.testing.assert_close(*open_systems.scripted_and_eager(calculator, _wire(8)))


def test_float32_follows_the_inputs():
    calculator = _calculator(PMECalculator, 5, 0.3)
    result, expected = open_systems.float32_and_float64(calculator, _wire(8))
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, rtol=1e-4, atol=1e-5)


def test_bad_wire_input():
    q, cell, r, pairs, distances, periodic = open_systems.inputs(*_wire(6))
    arguments = (q, cell, r, pairs, distances)
    # a fixed mesh is the box's (tests/test_fixed_open_meshes.py): these atoms
    # stick out of it
    fixed = PMECalculator(CoulombPotential(smearing=1.0), 0.5, fixed_mesh=[8, 8, 8])
    with pytest.raises(ValueError, match=r"`positions`.*inside the box"):
        fixed(*arguments, periodic=periodic)
    calculator = _calculator(PMECalculator, 4, 0.5)
    with pytest.raises(ValueError, match=r"`mesh_filter`.*fixed_mesh"):
        calculator(*arguments, periodic=periodic, mesh_filter=torch.ones(8, 8, 5))
    flat = cell.clone()
    flat[2] = 0.0
    with pytest.raises(ValueError, match=r"`cell`.*non-zero periodic"):
        calculator(q, flat, r, pairs, distances, periodic=periodic)


@pytest.mark.parametrize("smearing", [0.3, 0.8, 2.0])
def test_the_kernel_equals_its_integral(smearing):
    """``F(k, ρ)`` against ``scipy.integrate.quad`` of its integral for long
    and short periods and distances up to 500 (the quadrature must hold where
    ``k²/4u`` and ``uρ²`` cut the integrand at very different ``u``)."""
    from scipy.integrate import quad

    from torchpme._core.wire import coulomb_wire_kernel

    alpha_sq = 0.5 / smearing**2
    ks = 2.0 * np.pi / np.array([1000.0, 200.0, 50.0, 5.0, 2.5, 0.3])
    rhos = np.array([0.0, 0.05, 1.0, 5.0, 20.0, 60.0, 200.0, 500.0])
    values = coulomb_wire_kernel(
        torch.tensor(ks), torch.tensor(rhos), torch.zeros(1, dtype=torch.float64),
        smearing, torch.tensor(1.0, dtype=torch.float64),
    )[:, :, 0].numpy()  # fmt: skip
    for i, k in enumerate(ks):
        for j, rho in enumerate(rhos):

            def integrand(x, k=k, rho=rho):
                u = alpha_sq * np.exp(x)
                return np.exp(-u * rho**2 - k**2 / (4.0 * u))

            expected = quad(integrand, -80.0, 0.0, epsabs=1e-300, epsrel=1e-13,
                            limit=2000)[0]  # fmt: skip
            assert abs(values[i, j] - expected) < 1e-13
