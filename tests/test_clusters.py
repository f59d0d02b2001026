"""Clusters (``periodic`` all False) on the mesh: PME and P3M against the direct sum.

The reference is the NumPy sum over all pairs, ``E = Σ_{i<j} q_i q_j / r_ij``,
with its forces and charge derivatives written out by hand; derivatives of the
mesh path are also checked by ``gradcheck`` / ``gradgradcheck`` (finite
differences).
"""

import numpy as np
import pytest
import torch
from reference import requires_compile
from torch.autograd import gradcheck, gradgradcheck

from torchpme import (
    CombinedPotential,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)

CLUSTER = torch.tensor([False, False, False])
# (calculator, nodes, mesh spacing, relative tolerance of the energy) at smearing 0.8
ACCURATE = [
    (PMECalculator, 7, 0.15, 1e-7),
    (P3MCalculator, 5, 0.2, 1e-5),
]


def _cluster(n_atoms, neutral, seed=0, extent=4.0):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0.0, extent, size=(n_atoms, 3)) + [3.0, -7.0, 11.0]
    charges = rng.normal(size=(n_atoms, 1))
    if neutral:
        charges -= charges.mean()
    return positions, charges


def _direct(positions, charges):
    """``(E, forces, ∂E/∂q, scale)`` of ``E = Σ_{i<j} q_i q_j / r_ij``; the
    scale is ``Σ_{i<j} |q_i q_j| / r_ij`` (a charged cluster's energy can be
    much smaller than its terms)."""
    q = charges[:, 0]
    difference = positions[:, None, :] - positions[None, :, :]
    distance = np.linalg.norm(difference, axis=-1)
    np.fill_diagonal(distance, np.inf)
    energy = 0.5 * np.sum(q[:, None] * q[None, :] / distance)
    forces = np.sum(
        (q[:, None] * q[None, :] / distance**3)[..., None] * difference, axis=1
    )
    scale = 0.5 * np.sum(np.abs(q[:, None] * q[None, :]) / distance)
    return energy, forces, (q[None, :] / distance).sum(axis=1)[:, None], scale


def _all_pairs(positions):
    i, j = torch.triu_indices(len(positions), len(positions), 1)
    distances = torch.linalg.norm(positions[j] - positions[i], dim=1)
    return torch.stack([i, j], 1), distances


def _evaluate(calculator, positions, charges, use_energy=True):
    positions = torch.tensor(positions, requires_grad=True)
    charges = torch.tensor(charges, requires_grad=True)
    pairs, distances = _all_pairs(positions)
    arguments = (charges, torch.zeros(3, 3, dtype=torch.float64), positions, pairs)
    if use_energy:
        energy = calculator.energy(*arguments, distances, periodic=CLUSTER)
    else:
        potentials = calculator(*arguments, distances, periodic=CLUSTER)
        energy = torch.sum(charges * potentials)
    grad_positions, grad_charges = torch.autograd.grad(energy, (positions, charges))
    return float(energy.detach()), -grad_positions.numpy(), grad_charges.numpy()


@pytest.mark.parametrize(("method", "nodes", "spacing", "tolerance"), ACCURATE)
@pytest.mark.parametrize("neutral", [True, False], ids=["neutral", "charged"])
@pytest.mark.parametrize("n_atoms", [10, 60])
def test_equals_the_direct_sum(method, nodes, spacing, tolerance, neutral, n_atoms):
    positions, charges = _cluster(n_atoms, neutral)
    calculator = method(
        CoulombPotential(smearing=0.8), mesh_spacing=spacing, interpolation_nodes=nodes
    )
    energy, forces, grad_charges = _evaluate(calculator, positions, charges)
    expected_energy, expected_forces, expected_grad, size = _direct(positions, charges)
    assert abs(energy - expected_energy) <= tolerance * size
    scale = np.abs(expected_forces).max()
    np.testing.assert_allclose(forces, expected_forces, atol=30 * tolerance * scale)
    scale = np.abs(expected_grad).max()
    np.testing.assert_allclose(grad_charges, expected_grad, atol=30 * tolerance * scale)


@pytest.mark.parametrize("exponent", [2, 3, 6])
def test_inverse_power_laws_equal_the_direct_sum(exponent):
    """``1/r^p`` through the same free-space mesh: its sampled long-range part
    plus the pair sum equals ``Σ_{i<j} q_i q_j / r_ij^p`` over all pairs."""
    positions, charges = _cluster(25, neutral=False, seed=11)
    potential = InversePowerLawPotential(exponent, smearing=0.8)
    calculator = PMECalculator(potential, mesh_spacing=0.15, interpolation_nodes=7)
    energy = _evaluate(calculator, positions, charges)[0]
    q = charges[:, 0]
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    terms = q[:, None] * q[None, :] / distance**exponent
    expected = 0.5 * np.sum(terms)
    assert abs(energy - expected) <= 1e-6 * 0.5 * np.sum(np.abs(terms))


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_forward_and_energy_agree(method):
    positions, charges = _cluster(12, neutral=False, seed=3)
    calculator = method(CoulombPotential(smearing=1.0), mesh_spacing=0.4)
    through_energy = _evaluate(calculator, positions, charges)
    through_forward = _evaluate(calculator, positions, charges, use_energy=False)
    for a, b in zip(through_energy, through_forward):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_translation_and_cell_do_not_matter():
    positions, charges = _cluster(20, neutral=False, seed=4)
    calculator = PMECalculator(
        CoulombPotential(smearing=0.8), mesh_spacing=0.15, interpolation_nodes=7
    )
    reference = _evaluate(calculator, positions, charges)[0]
    shifted = _evaluate(calculator, positions + [0.123, -4.567, 0.089], charges)[0]
    assert abs(shifted - reference) <= 1e-7 * abs(reference)
    # the cell only has to be given: any cell, the same numbers
    q, r = torch.tensor(charges), torch.tensor(positions)
    pairs, distances = _all_pairs(r)
    zero = calculator(q, torch.zeros(3, 3, dtype=torch.float64), r, pairs, distances,
                      periodic=CLUSTER)  # fmt: skip
    other = calculator(q, 7.0 * torch.eye(3, dtype=torch.float64), r, pairs, distances,
                       periodic=CLUSTER)  # fmt: skip
    assert torch.equal(zero, other)


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_gradcheck(method):
    positions, charges = _cluster(4, neutral=False, seed=5, extent=2.0)
    calculator = method(CoulombPotential(smearing=1.0), mesh_spacing=0.6)
    cell = torch.zeros(3, 3, dtype=torch.float64)

    def energy(charges, positions):
        pairs, distances = _all_pairs(positions)
        return calculator.energy(
            charges, cell, positions, pairs, distances, periodic=CLUSTER
        )

    def potentials(charges, positions):
        pairs, distances = _all_pairs(positions)
        return calculator(charges, cell, positions, pairs, distances, periodic=CLUSTER)

    inputs = (
        torch.tensor(charges, requires_grad=True),
        torch.tensor(positions, requires_grad=True),
    )
    assert gradcheck(energy, inputs)
    assert gradcheck(potentials, inputs)
    assert gradgradcheck(energy, inputs)


def test_float32_follows_the_inputs():
    positions, charges = _cluster(15, neutral=True, seed=6)
    calculator = P3MCalculator(CoulombPotential(smearing=0.8), mesh_spacing=0.3)
    calculator32 = P3MCalculator(CoulombPotential(smearing=0.8), mesh_spacing=0.3)
    calculator32.to(torch.float32)
    q, r = torch.tensor(charges), torch.tensor(positions)
    pairs, distances = _all_pairs(r)
    cell = torch.zeros(3, 3, dtype=torch.float64)
    result = calculator32(
        q.float(), cell.float(), r.float(), pairs, distances.float(), periodic=CLUSTER
    )
    assert result.dtype == torch.float32
    expected = calculator(q, cell, r, pairs, distances, periodic=CLUSTER)
    torch.testing.assert_close(result.double(), expected, rtol=1e-4, atol=1e-5)


def test_torchscript_equals_eager():
    positions, charges = _cluster(10, neutral=False, seed=7)
    calculator = PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.4)
    scripted = torch.jit.script(calculator)
    q, r = torch.tensor(charges), torch.tensor(positions)
    pairs, distances = _all_pairs(r)
    arguments = (q, torch.zeros(3, 3, dtype=torch.float64), r, pairs, distances)
    torch.testing.assert_close(
        scripted(*arguments, periodic=CLUSTER), calculator(*arguments, periodic=CLUSTER)
    )


@requires_compile
@pytest.mark.slow
def test_compile_computes_a_cluster_not_a_crystal():
    """``torch.compile`` reads ``periodic`` (a graph break) and gives the cluster
    answer, which differs from the bulk answer for the same zero cell."""
    positions, charges = _cluster(10, neutral=False, seed=7)
    calculator = PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.4)
    q, r = torch.tensor(charges), torch.tensor(positions)
    pairs, distances = _all_pairs(r)
    arguments = (q, torch.zeros(3, 3, dtype=torch.float64), r, pairs, distances)

    def potentials(*arguments):
        return calculator(*arguments, periodic=CLUSTER)

    expected = potentials(*arguments)
    torch.testing.assert_close(torch.compile(potentials)(*arguments), expected)


def _arguments(n_atoms=3):
    positions, charges = _cluster(n_atoms, neutral=True, seed=8)
    q, r = torch.tensor(charges), torch.tensor(positions)
    pairs, distances = _all_pairs(r)
    return q, 10.0 * torch.eye(3, dtype=torch.float64), r, pairs, distances


def test_wires_of_other_potentials_are_refused():
    potential = CombinedPotential(
        [
            CoulombPotential(smearing=1.0),
            InversePowerLawPotential(exponent=6, smearing=1.0),
        ],
        smearing=1.0,
    )
    calculator = PMECalculator(potential, mesh_spacing=0.5)
    wire = torch.tensor([False, False, True])
    with pytest.raises(ValueError, match=r"`periodic`.*wire"):
        calculator(*_arguments(), periodic=wire)


def test_ewald_refuses_clusters():
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=1.0)
    with pytest.raises(ValueError, match=r"`periodic`.*two or three"):
        calculator.energy(*_arguments(), periodic=CLUSTER)


def test_periodic_must_be_bools():
    calculator = PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.5)
    with pytest.raises(TypeError, match=r"`periodic`"):
        calculator(*_arguments(), periodic=torch.zeros(3))
    with pytest.raises(ValueError, match=r"`periodic`"):
        calculator(*_arguments(), periodic=torch.tensor([False, False]))


def test_a_fixed_mesh_needs_the_clusters_box():
    """The zero cell of a cluster on its own mesh is no box for a fixed one
    (tests/test_clusters_fixed.py has the rest)."""
    calculator = PMECalculator(
        CoulombPotential(smearing=1.0), mesh_spacing=0.5, fixed_mesh=[8, 8, 8]
    )
    q, _, r, pairs, distances = _arguments()
    zero = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`cell`.*box of a cluster"):
        calculator(q, zero, r, pairs, distances, periodic=CLUSTER)


def _mixed_batch():
    """A cluster (zero cell), a crystal, a slab with vacuum and a wire, packed."""
    from reference import neighbor_list

    rng = np.random.default_rng(9)
    systems = [
        (_cluster(8, neutral=False, seed=10)[0], np.zeros((3, 3)), [False] * 3),
        (rng.uniform(0, 5.0, (10, 3)), 5.0 * np.eye(3), [True] * 3),
        (
            rng.uniform(0, 4.0, (6, 3)) * [1, 1, 0.5],
            np.diag([4.0, 4.0, 12.0]),
            [True, True, False],
        ),
        (
            rng.uniform(0, 3.0, (7, 3)) * [1, 1, 5.0 / 3.0],
            np.diag([3.0, 3.0, 5.0]),
            [False, False, True],
        ),
    ]
    parts = {"q": [], "r": [], "index": [], "pairs": [], "cells": [], "periodic": []}
    offset = 0
    for number, (positions, cell, periodic) in enumerate(systems):
        if any(periodic):
            pairs, shifts = neighbor_list(positions, cell, 3.0, periodic=periodic)
            i, j = pairs[:, 0], pairs[:, 1]
            distances = np.linalg.norm(
                positions[j] - positions[i] + shifts @ cell, axis=1
            )
        else:
            i, j = np.triu_indices(len(positions), 1)
            pairs = np.stack([i, j], 1)
            distances = np.linalg.norm(positions[j] - positions[i], axis=1)
        parts["q"].append(rng.normal(size=(len(positions), 2)))
        parts["r"].append(positions)
        parts["index"].append(np.full(len(positions), number))
        parts["pairs"].append((pairs + offset, distances))
        parts["cells"].append(cell)
        parts["periodic"].append(periodic)
        offset += len(positions)
    return systems, parts


def _packed(parts):
    pairs = torch.tensor(np.concatenate([p for p, _ in parts["pairs"]]))
    distances = torch.tensor(np.concatenate([d for _, d in parts["pairs"]]))
    return (
        torch.tensor(np.concatenate(parts["q"])),
        torch.tensor(np.stack(parts["cells"])),
        torch.tensor(np.concatenate(parts["r"]), requires_grad=True),
        torch.tensor(np.concatenate(parts["index"])),
        pairs,
        distances,
        torch.tensor(parts["periodic"]),
    )


@pytest.mark.parametrize(
    ("method", "slab_method", "exponent"),
    [
        (PMECalculator, "yeh-berkowitz", 1),
        (PMECalculator, "exact", 1),
        (P3MCalculator, "yeh-berkowitz", 1),
        (P3MCalculator, "exact", 1),
        (PMECalculator, "exact", 3),
    ],
)
def test_mixed_batches_equal_single_systems(method, slab_method, exponent):
    """Clusters, crystals, slabs and wires in one ``forward_batch`` / ``energy_batch``
    call: each system's potentials, energy and forces equal its own call."""
    potential = InversePowerLawPotential(exponent=exponent, smearing=0.7)
    calculator = method(potential, mesh_spacing=0.35, slab_method=slab_method)
    _, parts = _mixed_batch()
    q, cells, r, index, pairs, distances, periodic = _packed(parts)
    potentials = calculator.forward_batch(
        q, cells, r, index, pairs, distances, periodic=periodic
    )
    energies = calculator.energy_batch(
        q, cells, r, index, pairs, distances, periodic=periodic
    )
    weights = torch.tensor([1.0, -2.0, 0.5, 0.7], dtype=torch.float64)
    (forces,) = torch.autograd.grad(-(weights * energies).sum(), r)
    offset = 0
    for number in range(4):
        atoms = slice(offset, offset + len(parts["r"][number]))
        single_r = r[atoms].detach().clone().requires_grad_(True)
        single_pairs = torch.tensor(parts["pairs"][number][0] - offset)
        single_distances = torch.tensor(parts["pairs"][number][1])
        arguments = (q[atoms], cells[number], single_r, single_pairs, single_distances)
        single = calculator(*arguments, periodic=periodic[number])
        torch.testing.assert_close(potentials[atoms], single, rtol=1e-12, atol=1e-12)
        energy = calculator.energy(*arguments, periodic=periodic[number])
        torch.testing.assert_close(energies[number], energy, rtol=1e-12, atol=1e-12)
        (single_forces,) = torch.autograd.grad(-weights[number] * energy, single_r)
        torch.testing.assert_close(forces[atoms], single_forces, rtol=1e-10, atol=1e-12)
        offset += len(parts["r"][number])


def test_batches_refuse_combined_wires_and_ewald_clusters():
    _, parts = _mixed_batch()
    q, cells, r, index, pairs, distances, periodic = _packed(parts)
    potential = CombinedPotential(
        [
            CoulombPotential(smearing=0.7),
            InversePowerLawPotential(exponent=6, smearing=0.7),
        ],
        smearing=0.7,
    )
    calculator = PMECalculator(potential, mesh_spacing=0.35)
    wire = periodic.clone()
    wire[2] = torch.tensor([False, False, True])
    with pytest.raises(ValueError, match=r"`periodic`.*wire"):
        calculator.forward_batch(q, cells, r, index, pairs, distances, periodic=wire)
    ewald = EwaldCalculator(CoulombPotential(smearing=0.7), lr_wavelength=1.0)
    with pytest.raises(ValueError, match=r"`periodic`.*two or three"):
        ewald.energy_batch(q, cells, r, index, pairs, distances, periodic=periodic)


def test_a_sparse_cluster_is_refused_before_the_mesh_is_made():
    calculator = PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.1)
    q, cell, r, pairs, distances = _arguments()
    r = r.clone()
    r[0] += 1e5
    with pytest.raises(ValueError, match=r"`mesh_spacing`.*cluster"):
        calculator(q, cell, r, pairs, distances, periodic=CLUSTER)
