"""Potential and field at probe points (torchpme.probes).

References: the Coulomb sum over all pairs in NumPy for clusters; the independent
NumPy Ewald sum of reference.py for crystals, the probes added there as atoms of
charge 0 (a probe's potential is the one a test charge feels). The field is checked
against central finite differences of the potential.
"""

import numpy as np
import pytest
import torch
from reference import ewald_potentials

from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
)
from torchpme.probes import field_at, potential_at, probe_neighbors

DTYPE = torch.float64
CLUSTER = torch.tensor([False, False, False])


def _system(n_sources=12, n_probes=5, seed=0, charged=False):
    """Random sources and probes in a skewed cell, probes away from sources."""
    rng = np.random.default_rng(seed)
    cell = np.array([[6.0, 0.0, 0.0], [0.8, 5.5, 0.0], [-0.5, 0.6, 6.3]])
    sources = rng.random((n_sources, 3)) @ cell
    charges = rng.normal(size=(n_sources, 2))
    if not charged:
        charges -= charges.mean(axis=0)
    probes = []
    while len(probes) < n_probes:
        point = rng.random(3) @ cell
        if np.min(np.linalg.norm(sources - point, axis=1)) > 0.5:
            probes.append(point)
    return sources, charges, cell, np.array(probes)


def _direct(sources, charges, probes):
    """φ(p) = Σ_j q_j / |r_p − r_j| over all sources (no images)."""
    r = np.linalg.norm(probes[:, None, :] - sources[None, :, :], axis=-1)
    return (1.0 / r) @ charges


def _torch(*arrays):
    return [torch.tensor(a, dtype=DTYPE) for a in arrays]


def _scaled_error(result, reference):
    return float(np.max(np.abs(result - reference)) / np.max(np.abs(reference)))


CLUSTER_METHODS = {
    "direct": (lambda: Calculator(CoulombPotential()), 30.0, 1e-12),
    "pme": (
        lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.3, 7),
        6.5,
        1e-6,
    ),
    "p3m": (
        lambda: P3MCalculator(CoulombPotential(smearing=1.0), 0.3, 5),
        6.5,
        1e-6,
    ),
}


@pytest.mark.parametrize("method", list(CLUSTER_METHODS))
def test_cluster_potential_and_field_equal_the_direct_sum(method):
    make, cutoff, tolerance = CLUSTER_METHODS[method]
    sources, charges, _, probes = _system(charged=True)
    s, q, p = _torch(sources, charges, probes)
    zeros = torch.zeros(3, 3, dtype=DTYPE)
    pairs, distances = probe_neighbors(p, s, None, cutoff)
    calculator = make()
    potential = potential_at(calculator, q, zeros, s, p, pairs, distances, CLUSTER)
    expected = _direct(sources, charges, probes)
    assert _scaled_error(potential.numpy(), expected) < tolerance
    # the field is −∇φ: central differences of the reference
    _, field = field_at(calculator, q, zeros, s, p, pairs, periodic=CLUSTER)
    h = 1e-5
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = h
        slope = (
            _direct(sources, charges, probes + step)
            - _direct(sources, charges, probes - step)
        ) / (2 * h)
        assert _scaled_error(field[:, :, axis].numpy(), -slope) < max(tolerance, 1e-8)


@pytest.mark.parametrize(
    ("make", "tolerance"),
    [
        (lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.4), 1e-9),
        (lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.3, 7), 1e-6),
    ],
    ids=["ewald", "pme"],
)
@pytest.mark.parametrize("charged", [False, True], ids=["neutral", "charged"])
def test_crystal_potential_equals_an_independent_ewald_sum(make, tolerance, charged):
    sources, charges, cell, probes = _system(charged=charged)
    s, q, c, p = _torch(sources, charges, cell, probes)
    pairs, distances = probe_neighbors(p, s, c, 6.5)
    potential = potential_at(make(), q, c, s, p, pairs, distances)
    # the probes as atoms of charge 0; the reference halves (E = Σ q V)
    everything = np.concatenate([sources, probes])
    all_charges = np.concatenate([charges, np.zeros((len(probes), 2))])
    expected = 2.0 * ewald_potentials(everything, all_charges, cell)[len(sources) :]
    assert _scaled_error(potential.numpy(), expected) < tolerance


def test_crystal_field_is_minus_the_gradient():
    sources, charges, cell, probes = _system()
    s, q, c, p = _torch(sources, charges, cell, probes)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.4)
    pairs, _, shifts = probe_neighbors(p, s, c, 6.5, return_shifts=True)
    potential, field = field_at(calculator, q, c, s, p, pairs, shifts)

    def reference(points):
        everything = np.concatenate([sources, points])
        all_charges = np.concatenate([charges, np.zeros((len(points), 2))])
        return 2.0 * ewald_potentials(everything, all_charges, cell)[len(sources) :]

    assert _scaled_error(potential.detach().numpy(), reference(probes)) < 1e-9
    h = 1e-5
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = h
        slope = (reference(probes + step) - reference(probes - step)) / (2 * h)
        assert _scaled_error(field[:, :, axis].numpy(), -slope) < 1e-7


def test_gradients_reach_sources_charges_and_probes():
    sources, charges, cell, probes = _system(n_sources=4, n_probes=2)
    s, q, c, p = _torch(sources, charges, cell, probes)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 1.0)
    pairs, _, shifts = probe_neighbors(p, s, c, 4.0, return_shifts=True)

    def potential(sources, charges, probes):
        vectors = sources[pairs[:, 1]] - probes[pairs[:, 0]] + shifts.to(DTYPE) @ c
        distances = torch.linalg.norm(vectors, dim=1)
        return potential_at(calculator, charges, c, sources, probes, pairs, distances)

    inputs = [t.clone().requires_grad_(True) for t in (s, q, p)]
    assert torch.autograd.gradcheck(potential, inputs)


def test_full_neighbor_list_calculators_give_the_same_potential():
    sources, charges, cell, probes = _system()
    s, q, c, p = _torch(sources, charges, cell, probes)
    pairs, distances = probe_neighbors(p, s, c, 6.5)
    results = []
    for full in (False, True):
        calculator = PMECalculator(
            CoulombPotential(smearing=1.0), 0.5, full_neighbor_list=full
        )
        results.append(potential_at(calculator, q, c, s, p, pairs, distances))
    torch.testing.assert_close(results[0], results[1], rtol=1e-13, atol=1e-13)


def test_bad_probe_inputs_are_refused():
    sources, charges, cell, probes = _system()
    s, q, c, p = _torch(sources, charges, cell, probes)
    pairs, distances = probe_neighbors(p, s, c, 4.0)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 1.0)
    with pytest.raises(ValueError, match="probes"):
        potential_at(calculator, q, c, s, p[:, :2], pairs, distances)
    with pytest.raises(TypeError, match="probes"):
        potential_at(calculator, q, c, s, p.float(), pairs, distances)
    with pytest.raises(ValueError, match="probe_indices"):
        potential_at(calculator, q, c, s, p, pairs + 100, distances)
    with pytest.raises(ValueError, match="probe_indices"):
        potential_at(calculator, q, c, s, p, pairs[:, :1], distances)


def test_uniform_field_potential_and_forces():
    """Cluster: φ = −E·r and the force q E; crystal: the sawtooth (an image of an
    atom has the potential of the atom wrapped into the cell)."""
    from torchpme.probes import uniform_field_potential

    sources, charges, cell, _ = _system(n_sources=5)
    s, q, c = _torch(sources, charges[:, :1], cell)
    field = torch.tensor([0.3, -0.2, 0.5], dtype=DTYPE)
    where = s.clone().requires_grad_(True)
    potential = uniform_field_potential(where, field)
    np.testing.assert_allclose(
        potential.detach().numpy()[:, 0], -sources @ field.numpy()
    )
    (gradient,) = torch.autograd.grad((q * potential).sum(), where)
    torch.testing.assert_close(-gradient, q * field)
    shifted = s + torch.tensor([1.0, -2.0, 1.0], dtype=DTYPE) @ c
    torch.testing.assert_close(
        uniform_field_potential(shifted, field, c), uniform_field_potential(s, field, c)
    )
    # along an open direction nothing is wrapped
    slab = torch.tensor([True, True, False])
    lifted = s + c[2]
    difference = uniform_field_potential(
        lifted, field, c, slab
    ) - uniform_field_potential(s, field, c, slab)
    torch.testing.assert_close(difference, -(c[2] @ field).expand(5, 1))
