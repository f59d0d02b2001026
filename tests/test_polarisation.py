"""Induced dipoles (torchpme.polarisation) against the dense linear solve in NumPy.

The dipole field matrix ``T`` is built column by column from the NumPy multipole
reference (tests/reference_multipoles.py: the field of one unit dipole), with
Thole's damping written here from its formula; ``(α⁻¹ − T) μ = E⁰`` is then
solved densely. Gradients are checked as directional central differences of the
dense solution, and by gradgradcheck.
"""

import math

import numpy as np
import pytest
import torch
from reference_multipoles import multipole_direct, multipole_ewald

from torchpme import Calculator, CoulombPotential, P3MCalculator
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors
from torchpme.polarisation import induce

DTYPE = torch.float64
CELL = np.array([[6.0, 0.0, 0.0], [0.7, 5.6, 0.0], [-0.4, 0.5, 6.2]])
THOLE = 0.39


def _system(n=6, seed=0, closest=1.6):
    """Random atoms in ``CELL``, no two (or periodic images) closer than
    ``closest``: point polarisabilities closer than that polarise without bound."""
    rng = np.random.default_rng(seed)
    inverse = np.linalg.inv(CELL)
    positions = np.zeros((0, 3))
    while len(positions) < n:
        trial = rng.random(3) @ CELL
        d = positions - trial
        d = d - np.round(d @ inverse) @ CELL
        if len(positions) == 0 or np.linalg.norm(d, axis=1).min() > closest:
            positions = np.vstack([positions, trial])
    return {
        "positions": positions,
        "alpha": rng.uniform(0.5, 1.5, size=n),
        "field": 0.1 * rng.normal(size=(n, 3)),
    }


def _field_matrix(positions, periodic):
    """``(3N, 3N)``: column ``(j, a)`` is the field of a unit dipole ``e_a`` on
    atom ``j`` at every atom (the reference's sums)."""
    n = len(positions)
    matrix = np.zeros((3 * n, 3 * n))
    for column in range(3 * n):
        dipoles = np.zeros((n, 3))
        dipoles.reshape(-1)[column] = 1.0
        if periodic:
            out = multipole_ewald(positions, CELL, np.zeros(n), dipoles)
        else:
            out = multipole_direct(positions, np.zeros(n), dipoles)
        matrix[:, column] = out["field"].reshape(-1)
    return matrix


def _thole_matrix(positions, alpha, a):
    """The change of ``T`` by Thole's damping of every pair (a cluster)."""
    n = len(positions)
    change = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            vector = positions[i] - positions[j]
            r = np.linalg.norm(vector)
            u3 = a * r**3 / math.sqrt(alpha[i] * alpha[j])
            lambda3 = 1.0 - math.exp(-u3)
            lambda5 = 1.0 - (1.0 + u3) * math.exp(-u3)
            outer = np.outer(vector, vector)
            damped = (3 * lambda5 * outer - lambda3 * r**2 * np.eye(3)) / r**5
            bare = (3 * outer - r**2 * np.eye(3)) / r**5
            change[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] = damped - bare
    return change


def _dense(values, periodic, thole=None):
    matrix = _field_matrix(values["positions"], periodic)
    if thole is not None:
        matrix = matrix + _thole_matrix(values["positions"], values["alpha"], thole)
    response = np.diag(np.repeat(1.0 / values["alpha"], 3)) - matrix
    return np.linalg.solve(response, values["field"].reshape(-1)).reshape(-1, 3)


def _ours(values, periodic, thole=None, **options):
    tensors = {
        k: torch.tensor(v, dtype=DTYPE, requires_grad=True) for k, v in values.items()
    }
    p = tensors["positions"]
    if periodic:
        cell = torch.tensor(CELL, dtype=DTYPE)
        calculator = P3MCalculator(CoulombPotential(smearing=1.5), 0.15, 5)
        indices, _, shifts = compute_neighbors(
            p.detach(), cell, 12.0, return_shifts=True
        )
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ cell
    else:
        cell = torch.zeros(3, 3, dtype=DTYPE)
        calculator = Calculator(CoulombPotential())
        indices, _ = compute_neighbors(p.detach(), None, 50.0)
        vectors = p[indices[:, 1]] - p[indices[:, 0]]
    module = MultipoleCalculator(calculator.to(DTYPE))
    result = induce(
        module, tensors["alpha"], tensors["field"], cell, p, indices, vectors,
        thole=thole, **options,
    )  # fmt: skip
    return result, tensors


@pytest.mark.parametrize("thole", [None, THOLE], ids=["bare", "thole"])
def test_cluster_dipoles_equal_the_dense_solve(thole):
    values = _system()
    result, _ = _ours(values, False, thole)
    expected = _dense(values, False, thole)
    np.testing.assert_allclose(result.dipoles.detach().numpy(), expected, atol=1e-10)


def test_crystal_dipoles_equal_the_dense_solve():
    values = _system()
    result, _ = _ours(values, True)
    expected = _dense(values, True)
    np.testing.assert_allclose(
        result.dipoles.detach().numpy(), expected, atol=1e-7 * np.abs(expected).max()
    )


def test_gradients_equal_differences_of_the_dense_solve():
    values = _system(n=5)
    result, tensors = _ours(values, False, THOLE)
    weights = np.random.default_rng(3).normal(size=(5, 3))
    loss = (result.dipoles * torch.tensor(weights)).sum()
    gradients = torch.autograd.grad(loss, list(tensors.values()))
    rng = np.random.default_rng(4)
    for (name, value), gradient in zip(values.items(), gradients):
        direction = rng.normal(size=value.shape)
        h = 1e-6

        def solved(x, name=name):
            return np.sum(weights * _dense({**values, name: x}, False, THOLE))

        slope = (solved(value + h * direction) - solved(value - h * direction)) / (
            2 * h
        )
        assert float(np.sum(gradient.numpy() * direction)) == pytest.approx(
            slope, rel=1e-6, abs=1e-10
        ), name


def test_twice_differentiable():
    values = _system(n=3, seed=2)
    p0 = torch.tensor(values["positions"])
    indices, _ = compute_neighbors(p0, None, 50.0)
    module = MultipoleCalculator(Calculator(CoulombPotential()).to(DTYPE))

    def dipoles(alpha, field, positions):
        vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
        return induce(
            module, alpha, field, torch.zeros(3, 3, dtype=DTYPE), positions,
            indices, vectors, thole=THOLE, tolerance=1e-14,
        ).dipoles  # fmt: skip

    inputs = [
        torch.tensor(values[k], dtype=DTYPE, requires_grad=True)
        for k in ("alpha", "field", "positions")
    ]
    assert torch.autograd.gradgradcheck(
        dipoles, inputs, atol=1e-6, rtol=1e-5, fast_mode=True
    )


def test_warm_start_and_the_polarisation_catastrophe():
    values = _system()
    cold, _ = _ours(values, False, THOLE)
    warm, _ = _ours(values, False, THOLE, initial=cold.dipoles.detach() * 1.001)
    assert warm.iterations < cold.iterations
    # two strongly polarisable atoms 0.8 apart: α⁻¹ − T is indefinite unless damped
    close = {
        "positions": np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.8]]),
        "alpha": np.array([1.0, 1.0]),
        "field": np.array([[0.0, 0.0, 0.1], [0.0, 0.0, 0.1]]),
    }
    with pytest.raises(ValueError, match=r"polarisabilities.*catastrophe"):
        _ours(close, False)
    damped, _ = _ours(close, False, THOLE)
    np.testing.assert_allclose(
        damped.dipoles.detach().numpy(), _dense(close, False, THOLE), atol=1e-10
    )


def test_bad_inputs_are_refused():
    values = _system()
    with pytest.raises(ValueError, match="polarisabilities"):
        _ours({**values, "alpha": -values["alpha"]}, False)
    with pytest.raises(ValueError, match="field"):
        _ours({**values, "field": values["field"][:, :2]}, False)
    with pytest.raises(ValueError, match="thole"):
        _ours(values, False, -1.0)
