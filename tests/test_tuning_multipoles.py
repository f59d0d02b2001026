"""Error estimates and tuning of the mesh methods for charges and dipoles,
against the independent NumPy multipolar Ewald sum (tests/reference_multipoles.py)."""

import functools

import numpy as np
import pytest
import torch
from reference_multipoles import multipole_ewald

from torchpme import CoulombPotential, P3MCalculator, PMECalculator
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors
from torchpme.tuning.multipoles import (
    mesh_force_error,
    real_space_force_error,
    tune_multipoles,
)

DTYPE = torch.float64


@functools.lru_cache
def _system(n=120, side=10.0, charges=True, seed=3):
    rng = np.random.default_rng(seed)
    cell = np.array([[side, 0.0, 0.0], [0.8, side, 0.0], [-0.5, 0.6, side]])
    positions = rng.uniform(size=(n, 3)) @ cell
    q = rng.normal(size=n) if charges else np.zeros(n)
    q -= q.mean()
    mu = 0.6 * rng.normal(size=(n, 3))
    # converged far beyond what the tests compare (alpha only moves work
    # between the two converged sums)
    forces = multipole_ewald(positions, cell, q, mu, alpha=0.5, tail=1e-10)["forces"]
    return positions, cell, q, mu, forces


def _forces(positions, cell, q, mu, calculator, cutoff):
    pos, cell_t = torch.tensor(positions), torch.tensor(cell)
    q_t, mu_t = torch.tensor(q), torch.tensor(mu)
    module = MultipoleCalculator(calculator.to(DTYPE))
    pairs, _, shifts = compute_neighbors(pos, cell_t, cutoff, return_shifts=True)
    p = pos.clone().requires_grad_(True)
    vectors = p[pairs[:, 1]] - p[pairs[:, 0]] + shifts.to(DTYPE) @ cell_t
    energy = module.energy(q_t, mu_t, cell_t, p, pairs, vectors)
    return -torch.autograd.grad(energy, p)[0].numpy()


def _rms(difference):
    return float(np.sqrt((difference**2).sum(axis=1).mean()))


@pytest.mark.parametrize("charges", [False, True], ids=["dipoles", "both"])
def test_real_space_estimate_matches_the_pairs_left_out(charges):
    """A fine mesh, so that what is missing is the pairs beyond the cutoff."""
    positions, cell, q, mu, reference = _system(charges=charges)
    smearing, cutoff = 1.1, 3.5
    calculator = P3MCalculator(CoulombPotential(smearing=smearing), 0.45, 5)
    measured = _rms(_forces(positions, cell, q, mu, calculator, cutoff) - reference)
    volume = abs(np.linalg.det(cell))
    estimate = real_space_force_error(
        torch.tensor(q), torch.tensor(mu), volume, cutoff, smearing
    )
    assert measured > 1e-4  # the pairs left out dominate
    assert 0.8 < estimate / measured < 1.25, (estimate, measured)


@pytest.mark.parametrize("method", ["p3m", "pme"])
def test_mesh_estimate_matches_the_mesh_error(method):
    """A long cutoff, so that what is missing is the mesh's error."""
    positions, cell, q, mu, reference = _system()
    smearing, spacing, nodes = 0.9, 1.4, 4
    kind = P3MCalculator if method == "p3m" else PMECalculator
    calculator = kind(CoulombPotential(smearing=smearing), spacing, nodes)
    forces = _forces(positions, cell, q, mu, calculator, 7.5)
    measured = _rms(forces - reference)
    estimate = mesh_force_error(
        torch.tensor(q), torch.tensor(mu), torch.tensor(cell), smearing, spacing,
        nodes, method,
    )  # fmt: skip
    assert measured > 1e-4
    assert 0.7 < estimate / measured < 1.4, (estimate, measured)


def test_tuned_parameters_meet_the_accuracy():
    positions, cell, q, mu, reference = _system()
    # absolute: the RMS force of random positions is dominated by close pairs
    accuracy = 1e-4
    cutoff = 4.5
    tuned = tune_multipoles(
        torch.tensor(q), torch.tensor(mu), torch.tensor(cell),
        torch.tensor(positions), cutoff, accuracy,
    )  # fmt: skip
    assert tuned.force_error * 1.5 <= accuracy
    calculator = P3MCalculator(
        CoulombPotential(smearing=tuned.smearing), **tuned.params
    )
    measured = _rms(_forces(positions, cell, q, mu, calculator, cutoff) - reference)
    assert measured <= accuracy, (measured, accuracy, tuned)
    # and not far more accurate than asked: the search does not overshoot
    assert measured > 0.02 * accuracy, (measured, accuracy, tuned)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"method": "ewald"}, "method"),
        ({"dipoles": torch.zeros(5, 3, dtype=DTYPE)}, "dipoles"),
        ({"charges": torch.zeros(5, dtype=DTYPE)}, "charges"),
        ({"accuracy": -1.0}, "accuracy"),
        ({"cutoff": 0.0}, "cutoff"),
    ],
)
def test_bad_inputs_are_refused(change, match):
    arguments = {
        "charges": torch.ones(4, dtype=DTYPE),
        "dipoles": torch.ones(4, 3, dtype=DTYPE),
        "cell": 5.0 * torch.eye(3, dtype=DTYPE),
        "positions": torch.rand(4, 3, dtype=DTYPE),
        "cutoff": 2.0,
        "accuracy": 1e-3,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        tune_multipoles(**arguments)


def test_nothing_to_tune_for_is_refused():
    zeros = torch.zeros(4, dtype=DTYPE)
    with pytest.raises(ValueError, match=r"not all zero"):
        tune_multipoles(
            zeros, torch.zeros(4, 3, dtype=DTYPE), 5.0 * torch.eye(3, dtype=DTYPE),
            torch.rand(4, 3, dtype=DTYPE), 2.0,
        )  # fmt: skip
