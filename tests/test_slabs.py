"""Slabs (two periodic directions) with ``slab_method="exact"``: PME and P3M
against an independent NumPy 2-D Ewald sum (``tests/reference_slab.py``), the
cell's extent along the open direction irrelevant, gradients, TorchScript, bad
input. Mixed batches: ``tests/test_clusters.py``.
"""

import numpy as np
import open_systems
import pytest
import torch
from reference_slab import slab_ewald
from torch.autograd import gradcheck, gradgradcheck

from torchpme import (
    CoulombPotential,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)

SMEARING = 0.8
# (calculator, nodes, mesh spacing, relative tolerance)
ACCURATE = [(PMECalculator, 7, 0.12, 1e-8), (P3MCalculator, 5, 0.12, 1e-8)]
THICKNESS = 3.0


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _slab(n_atoms, shape, charge="neutral", axis=2, seed=0, height=THICKNESS):
    """``(positions, charges, cell, periodic)``: ions in a slab ``THICKNESS``
    thick over an in-plane cell (``shape``: orthorhombic or triclinic), open
    along ``axis``, whose cell row is ``height`` along the normal plus an
    in-plane tilt; all rotated so that the plane is not a Cartesian one."""
    rng = np.random.default_rng(seed)
    a1 = np.array([5.0, 0.0, 0.0])
    if shape == "orthorhombic":
        a2 = np.array([0.0, 4.5, 0.0])
    else:
        a2 = np.array([1.7, 4.2, 0.0])
    fractions = rng.uniform(0.0, 1.0, size=(n_atoms, 2))
    heights = rng.uniform(0.0, THICKNESS, size=n_atoms)
    positions = fractions @ np.stack([a1, a2]) + heights[:, None] * [0.0, 0.0, 1.0]
    charges = rng.normal(size=n_atoms)
    if charge == "neutral":
        charges -= charges.mean()
    rotation = _rotation(seed + 1)
    cell = np.zeros((3, 3))
    cell[(axis + 1) % 3] = a1 @ rotation
    cell[(axis + 2) % 3] = a2 @ rotation
    cell[axis] = np.array([0.4, -0.3, height]) @ rotation
    periodic = [d != axis for d in range(3)]
    return positions @ rotation + [2.0, -1.0, 0.5], charges[:, None], cell, periodic


def _reference(system):
    positions, charges, cell, periodic = system
    axis = periodic.index(False)
    energy, potentials, forces = slab_ewald(
        positions, charges[:, 0], cell[(axis + 1) % 3], cell[(axis + 2) % 3]
    )
    return energy, forces, potentials


def _calculator(method, nodes, spacing):
    return method(
        CoulombPotential(smearing=SMEARING),
        mesh_spacing=spacing,
        interpolation_nodes=nodes,
        slab_method="exact",
    )


@pytest.mark.parametrize(("method", "nodes", "spacing", "tolerance"), ACCURATE)
@pytest.mark.parametrize("shape", ["orthorhombic", "triclinic"])
@pytest.mark.parametrize("charge", ["neutral", "charged"])
@pytest.mark.parametrize("axis", [2, 0])
def test_equals_the_2d_ewald_sum(
    method, nodes, spacing, tolerance, shape, charge, axis
):
    """Energy, forces and potentials of 12 random ions (net dipole along the
    normal; net charge in the charged case) within ``tolerance`` of the scale
    ``Σ|q_i| |φ|``."""
    system = _slab(12, shape, charge, axis=axis, seed=3)
    energy, forces, potentials = open_systems.evaluate(
        _calculator(method, nodes, spacing), system
    )
    expected = _reference(system)
    open_systems.assert_within(
        (energy, forces, potentials), expected, system[1], tolerance
    )


def test_the_open_extent_of_the_cell_does_not_matter():
    """The cell's third vector only has to exist (here: 1× and 3× the atoms'
    thickness, a different tilt, and zero): the results agree to 1e-10."""
    calculator = _calculator(PMECalculator, 5, 0.3)
    reference = open_systems.evaluate(
        calculator, _slab(10, "triclinic", height=THICKNESS)
    )
    positions, charges, cell, periodic = _slab(10, "triclinic", height=3 * THICKNESS)
    for open_row in (cell[2], 0.0 * cell[2]):
        changed = cell.copy()
        changed[2] = open_row
        result = open_systems.evaluate(
            calculator, (positions, charges, changed, periodic)
        )
        assert result[0] == pytest.approx(reference[0], rel=1e-10)
        np.testing.assert_allclose(result[1], reference[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_forward_and_energy_agree(method):
    calculator = _calculator(method, 5, 0.3)
    q, cell, r, pairs, distances, periodic = open_systems.inputs(
        *_slab(10, "triclinic", "charged")
    )
    potentials = calculator(q, cell, r, pairs, distances, periodic=periodic)
    energy = calculator.energy(q, cell, r, pairs, distances, periodic=periodic)
    assert float((q * potentials).sum()) == pytest.approx(float(energy), rel=1e-12)


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_gradcheck(method):
    """Positions, charges and the cell (stress along the plane) on a coarse mesh;
    second derivatives too."""
    calculator = _calculator(method, 4, 0.8)
    system = _slab(4, "triclinic", "charged")
    energy, arguments = open_systems.cell_energy(calculator, system)
    assert gradcheck(energy, arguments, atol=1e-7)
    assert gradgradcheck(energy, arguments, atol=1e-6)


def test_float32_follows_the_inputs():
    calculator = _calculator(PMECalculator, 5, 0.3)
    system = _slab(10, "triclinic")
    result, expected = open_systems.float32_and_float64(calculator, system)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, rtol=1e-4, atol=1e-5)


def test_torchscript_equals_eager():
    calculator = _calculator(P3MCalculator, 5, 0.3)
    system = _slab(10, "triclinic")
    torch.testing.assert_close(*open_systems.scripted_and_eager(calculator, system))


def test_bad_slab_input():
    with pytest.raises(ValueError, match=r"`slab_method`.*'ELC'"):
        PMECalculator(CoulombPotential(smearing=1.0), 0.5, slab_method="ELC")
    with pytest.raises(ValueError, match=r"`slab_method`.*InversePowerLaw"):
        P3MCalculator(
            InversePowerLawPotential(exponent=2, smearing=1.0),
            0.5,
            slab_method="exact",
        )
    q, cell, r, pairs, distances, periodic = open_systems.inputs(
        *_slab(6, "orthorhombic")
    )
    arguments = (q, cell, r, pairs, distances)
    # a fixed mesh is the box's (tests/test_fixed_open_meshes.py): these atoms
    # stick out of it
    fixed = PMECalculator(
        CoulombPotential(smearing=1.0), 0.5, fixed_mesh=[8, 8, 8], slab_method="exact"
    )
    with pytest.raises(ValueError, match=r"`positions`.*inside the box"):
        fixed(*arguments, periodic=periodic)
    calculator = _calculator(PMECalculator, 4, 0.5)
    with pytest.raises(ValueError, match=r"`mesh_filter`.*fixed_mesh"):
        calculator(*arguments, periodic=periodic, mesh_filter=torch.ones(8, 8, 5))
    flat = cell.clone()
    flat[0] = 0.0
    with pytest.raises(ValueError, match=r"`cell`.*two independent"):
        calculator(q, flat, r, pairs, distances, periodic=periodic)


def test_translation_and_permutation():
    """Moving the slab (along its normal too) changes the energy only at the
    interpolation error; permuting the atoms changes nothing but rounding."""
    calculator = _calculator(PMECalculator, 7, 0.12)
    positions, charges, cell, periodic = _slab(12, "triclinic", "charged", seed=4)
    energy = open_systems.evaluate(calculator, (positions, charges, cell, periodic))[0]
    moved = positions + [0.37, -1.9, 7.3]
    assert open_systems.evaluate(calculator, (moved, charges, cell, periodic))[0] == (
        pytest.approx(energy, rel=1e-9)
    )
    order = np.random.default_rng(5).permutation(len(positions))
    permuted = (positions[order], charges[order], cell, periodic)
    assert open_systems.evaluate(calculator, permuted)[0] == pytest.approx(
        energy, rel=1e-12
    )
