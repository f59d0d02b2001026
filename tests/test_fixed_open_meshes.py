"""Clusters and exact slabs on a fixed mesh: a box given as the cell (atoms
inside it along its open directions) and ``fixed_mesh`` nodes per lattice
vector, so that the shapes are fixed before the call (``torch.compile``, CUDA
graphs) and the filter can be kept. Against the NumPy direct sum of
``tests/test_clusters.py`` and the 2-D Ewald sum of ``tests/reference_slab.py``."""

import numpy as np
import open_systems
import pytest
import test_slabs
import test_wires
import torch
from reference import requires_compile
from test_clusters import CLUSTER, _all_pairs, _cluster, _direct

from torchpme import (
    CoulombPotential,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)

# a skewed box around the clusters of test_clusters._cluster (extent 4 at
# [3, -7, 11])
BOX = np.array([[6.0, 0.0, 0.0], [1.0, 6.0, 0.0], [-0.5, 0.8, 6.0]])
CORNER = np.array([2.0, -8.5, 10.5])


def _inputs(n_atoms, neutral, seed=0):
    positions, charges = _cluster(n_atoms, neutral, seed)
    return positions - CORNER, charges


def _evaluate(calculator, positions, charges, mesh_filter=None, call=None):
    r = torch.tensor(positions, requires_grad=True)
    q = torch.tensor(charges, requires_grad=True)
    pairs, distances = _all_pairs(r)
    energy = (call or calculator.energy)(
        q, torch.tensor(BOX), r, pairs, distances,
        periodic=CLUSTER, mesh_filter=mesh_filter,
    )  # fmt: skip
    grad_r, grad_q = torch.autograd.grad(energy, (r, q))
    return float(energy.detach()), -grad_r.numpy(), grad_q.numpy()


@pytest.mark.parametrize(
    ("method", "nodes", "fixed", "tolerance"),
    [(PMECalculator, 7, [64, 64, 64], 1e-7), (P3MCalculator, 5, [40, 40, 40], 1e-5)],
)
@pytest.mark.parametrize("neutral", [True, False], ids=["neutral", "charged"])
def test_equals_the_direct_sum(method, nodes, fixed, tolerance, neutral):
    positions, charges = _inputs(30, neutral)
    calculator = method(
        CoulombPotential(smearing=0.8),
        # P3M: twice the box's node spacing at most (the taper's nodes)
        mesh_spacing=0.29,
        interpolation_nodes=nodes,
        fixed_mesh=fixed,
    )
    energy, forces, potentials = _evaluate(calculator, positions, charges)
    e0, f0, phi0, scale = _direct(positions, charges)
    assert abs(energy - e0) < tolerance * scale
    np.testing.assert_allclose(forces, f0, atol=tolerance * np.abs(f0).max())
    np.testing.assert_allclose(potentials, phi0, atol=tolerance * np.abs(phi0).max())


def test_a_kept_filter_gives_the_same_result():
    positions, charges = _inputs(20, False, seed=2)
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 1.0, 5, fixed_mesh=[32, 32, 32]
    )
    kept = calculator.mesh_filter(torch.tensor(BOX), periodic=CLUSTER)
    fresh = _evaluate(calculator, positions, charges)
    reused = _evaluate(calculator, positions, charges, mesh_filter=kept)
    assert reused[0] == pytest.approx(fresh[0], rel=1e-13)
    np.testing.assert_allclose(reused[1], fresh[1], rtol=0, atol=1e-12)


def test_torchscript_equals_eager():
    positions, charges = _inputs(12, False, seed=3)
    calculator = P3MCalculator(
        CoulombPotential(smearing=0.8), 0.49, 4, fixed_mesh=[24, 24, 24]
    )
    scripted = torch.jit.script(calculator)
    assert _evaluate(calculator, positions, charges)[0] == pytest.approx(
        _evaluate(scripted, positions, charges, call=scripted.energy)[0], rel=1e-12
    )


@requires_compile
def test_compiled_equals_eager_without_recompiling():
    """Moving atoms changes no shape: one compilation serves every step."""
    torch._dynamo.reset()
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 1.0, 4, fixed_mesh=[24, 24, 24]
    )
    steps = []
    for seed in range(2):
        positions, charges = _inputs(12, False, seed=seed)
        r = torch.tensor(positions)
        pairs, distances = _all_pairs(r)
        steps.append((torch.tensor(charges), torch.tensor(BOX), r, pairs, distances))
    graphs = _compiled_steps(calculator, steps, CLUSTER)
    assert graphs[1] == graphs[0]


def _compiled_steps(calculator, steps, periodic):
    """The number of graphs compiled after each step of a compiled
    ``forward``, whose result equals the eager one at every step."""
    compiled = torch.compile(calculator.forward)
    counters = torch._dynamo.utils.counters
    graphs = []
    for arguments in steps:
        torch.testing.assert_close(
            compiled(*arguments, periodic=periodic),
            calculator(*arguments, periodic=periodic),
        )
        graphs.append(counters["stats"]["unique_graphs"])
    return graphs


def test_atoms_outside_the_box_are_refused():
    positions, charges = _inputs(8, False)
    positions[0] += [10.0, 0.0, 0.0]
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 1.0, 4, fixed_mesh=[16, 16, 16]
    )
    with pytest.raises(ValueError, match=r"`positions`.*inside the box"):
        _evaluate(calculator, positions, charges)


def test_a_filter_without_a_fixed_mesh_is_refused():
    positions, charges = _inputs(8, False)
    calculator = PMECalculator(CoulombPotential(smearing=0.8), 1.0, 4)
    with pytest.raises(ValueError, match=r"`mesh_filter`.*fixed_mesh"):
        _evaluate(calculator, positions, charges, mesh_filter=torch.ones(4, 4, 3))


def _slab_in_box(seed=3):
    """A charged triclinic slab open along axis 0, moved into its box (the
    cell with its open row 1.5 times longer) and the box."""
    positions, charges, cell, periodic = test_slabs._slab(
        10, "triclinic", "charged", axis=0, seed=seed
    )
    low = (positions @ np.linalg.inv(cell))[:, 0].min()
    positions = positions - (low - 0.05) * cell[0]
    cell = cell.copy()
    cell[0] *= 1.5
    return positions, charges, cell, periodic


@pytest.mark.parametrize(
    ("method", "nodes", "tolerance"),
    [(PMECalculator, 7, 1e-7), (P3MCalculator, 5, 1e-6)],
)
def test_slabs_equal_the_2d_ewald_sum(method, nodes, tolerance):
    system = _slab_in_box()
    calculator = method(
        CoulombPotential(smearing=0.8), 0.18, nodes,
        slab_method="exact", fixed_mesh=[48, 64, 64],
    )  # fmt: skip
    energy, forces, potentials = open_systems.evaluate(calculator, system)
    expected = test_slabs._reference(system)
    open_systems.assert_within(
        (energy, forces, potentials), expected, system[1], tolerance
    )


def test_a_slabs_kept_filter_and_torchscript_equal_eager():
    positions, charges, cell, periodic = _slab_in_box(seed=4)
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 0.5, 5,
        slab_method="exact", fixed_mesh=[24, 32, 32],
    )  # fmt: skip
    q, cell_t, r, pairs, distances, periodic_t = open_systems.inputs(
        positions, charges, cell, periodic
    )
    arguments = (q.detach(), cell_t, r.detach(), pairs, distances.detach())
    eager = calculator(*arguments, periodic=periodic_t)
    kept = calculator.mesh_filter(cell_t, periodic=periodic_t)
    torch.testing.assert_close(
        calculator(*arguments, periodic=periodic_t, mesh_filter=kept), eager
    )
    scripted = torch.jit.script(calculator)
    torch.testing.assert_close(scripted(*arguments, periodic=periodic_t), eager)


def test_a_slab_outside_its_box_is_refused():
    positions, charges, cell, periodic = _slab_in_box()
    positions = positions + 0.9 * cell[0]
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 0.5, 5,
        slab_method="exact", fixed_mesh=[16, 16, 16],
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"`positions`.*inside the box"):
        open_systems.evaluate(calculator, (positions, charges, cell, periodic))


def _wire_in_box(seed=3):
    """A charged wire along axis 1, tilted, moved into its box (the cell with
    its open rows 1.3 times longer, one reversed, so that the box's
    cross-section reaches to both sides of its corner) and the box."""
    positions, charges, cell, periodic = test_wires._wire(
        10, "charged", axis=1, seed=seed
    )
    cell = cell.copy()
    cell[2] *= -1.0
    fractional = positions @ np.linalg.inv(cell)
    for axis in (0, 2):
        positions = positions - (fractional[:, axis].min() - 0.05) * cell[axis]
    cell[[0, 2]] *= 1.3
    return positions, charges, cell, periodic


@pytest.mark.parametrize(
    ("method", "nodes", "exponent", "tolerance"),
    [
        (PMECalculator, 7, 1, 1e-7),
        (P3MCalculator, 5, 1, 1e-6),
        (PMECalculator, 7, 3, 1e-7),
    ],
)
def test_wires_equal_the_1d_sums(method, nodes, exponent, tolerance):
    from reference_powerlaw_open import powerlaw_wire

    system = _wire_in_box()
    calculator = method(
        InversePowerLawPotential(exponent=exponent, smearing=0.8), 0.16, nodes,
        fixed_mesh=[48, 48, 48],
    )  # fmt: skip
    energy, forces, potentials = open_systems.evaluate(calculator, system)
    positions, charges, cell, _ = system
    if exponent == 1:
        expected = test_wires._reference(system)
    else:
        e0, phi0, f0 = powerlaw_wire(positions, charges[:, 0], cell[1], exponent)
        expected = (e0, f0, phi0)
    open_systems.assert_within(
        (energy, forces, potentials), expected, charges, tolerance
    )


def test_a_wires_kept_filter_equals_a_fresh_one():
    positions, charges, cell, periodic = _wire_in_box(seed=5)
    calculator = P3MCalculator(
        CoulombPotential(smearing=0.8), 0.32, 4, fixed_mesh=[16, 24, 24]
    )
    q, cell_t, r, pairs, distances, periodic_t = open_systems.inputs(
        positions, charges, cell, periodic
    )
    arguments = (q.detach(), cell_t, r.detach(), pairs, distances.detach())
    kept = calculator.mesh_filter(cell_t, periodic=periodic_t)
    torch.testing.assert_close(
        calculator(*arguments, periodic=periodic_t, mesh_filter=kept),
        calculator(*arguments, periodic=periodic_t),
    )


@requires_compile
def test_a_compiled_slab_equals_eager_without_recompiling():
    """Slabs and wires share the setup of a fixed box (the slab compiles in
    a fraction of the wire's time)."""
    boxed = _slab_in_box
    torch._dynamo.reset()
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 0.5, 4,
        slab_method="exact", fixed_mesh=[16, 16, 16],
    )  # fmt: skip
    positions, charges, cell, periodic = boxed()
    pairs, images = open_systems.pairs(positions, cell, periodic)
    steps = []
    for step in range(2):
        # atoms moved, the same pair list: only the values change
        r = torch.tensor(positions) + 0.05 * step
        distances = torch.linalg.norm(r[pairs[:, 1]] - r[pairs[:, 0]] + images, dim=1)
        steps.append((torch.tensor(charges), torch.tensor(cell), r, pairs, distances))
    graphs = _compiled_steps(calculator, steps, torch.tensor(periodic))
    assert graphs[0] == graphs[1]


def test_atoms_on_the_faces_of_the_box_are_taken():
    """Atoms exactly on the faces (fractional 0 and 1, up to rounding) stay on
    the mesh: the energy equals the direct sum."""
    rng = np.random.default_rng(7)
    fractional = rng.uniform(0.0, 1.0, size=(12, 3))
    fractional[:4, 0] = 0.0
    fractional[4:8, 1] = 1.0
    fractional[8:, 2] = 1.0 - 1e-16
    positions = fractional @ BOX
    charges = rng.normal(size=(12, 1))
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), 1.0, 6, fixed_mesh=[64, 64, 64]
    )
    energy = _evaluate(calculator, positions, charges)[0]
    e0, _, _, scale = _direct(positions, charges)
    assert abs(energy - e0) < 1e-6 * scale


def test_torchscript_refuses_atoms_outside_the_box():
    positions, charges = _inputs(8, False)
    positions[0] += [10.0, 0.0, 0.0]
    scripted = torch.jit.script(
        PMECalculator(CoulombPotential(smearing=0.8), 1.0, 4, fixed_mesh=[16] * 3)
    )
    with pytest.raises(Exception, match=r"`positions`.*inside the box"):
        _evaluate(scripted, positions, charges, call=scripted.energy)


def test_p3m_in_a_small_box_tapers_over_the_smearing():
    """A box of a few smearings: the taper still spans eight smearings, and
    the forces stay as accurate as on a mesh around the atoms."""
    positions, charges = _cluster(30, False, seed=1, extent=2.2)
    positions = positions - positions.min(axis=0) + 0.1
    box = np.diag([2.4, 2.4, 2.4])
    calculator = P3MCalculator(
        CoulombPotential(smearing=0.8), 0.3, 5, fixed_mesh=[16, 16, 16]
    )
    r = torch.tensor(positions, requires_grad=True)
    pairs, distances = _all_pairs(r)
    energy = calculator.energy(
        torch.tensor(charges), torch.tensor(box), r, pairs, distances,
        periodic=CLUSTER,
    )  # fmt: skip
    forces = -torch.autograd.grad(energy, r)[0].numpy()
    _, f0, _, _ = _direct(positions, charges)
    assert np.abs(forces - f0).max() < 1e-5 * np.abs(f0).max()


def test_p3m_refuses_a_box_finer_than_its_taper_spacing():
    positions, charges = _inputs(8, False)
    calculator = P3MCalculator(
        CoulombPotential(smearing=0.8), 1.0, 4, fixed_mesh=[24, 24, 24]
    )
    with pytest.raises(ValueError, match=r"`mesh_spacing` must be at most twice"):
        _evaluate(calculator, positions, charges)
