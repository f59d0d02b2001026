"""Every parameter set the engine accepts is rated, and the rating holds.

Fixed smearing, cutoff and k-space parameters are kept and the rest is chosen
around them (:func:`torchpme._cli.engine.choose_parameters`); the estimate of
what runs (:func:`torchpme.tuning.estimate_error`) is compared with the error
measured against the independent NumPy Ewald sum of ``tests/reference.py``.
The estimate is a prediction: measured RMS force errors stay below
``SAFETY`` (1.5) times it, and above 1/30 of it.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from reference import ewald_sum

from torchpme._cli import engine, parameters
from torchpme.tuning import estimate_error
from torchpme.tuning.tuner import SAFETY

NACL = 5.64


def rocksalt(seed=0):
    """64 ions of rock salt (2×2×2 conventional cells), displaced by 0.1 Å."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    cells = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    positions = (cells[:, None] + 0.5 * corners[None]).reshape(-1, 3) * NACL
    positions += 0.1 * np.random.default_rng(seed).normal(size=positions.shape)
    charges = np.tile((-1.0) ** corners.sum(axis=1), len(cells))
    return positions, charges, 2 * NACL * np.eye(3)


def random_box(n=32, length=10.0, seed=3):
    """``n`` ions of charge ±1 at random, no pair closer than 1.5 Å."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n:
        trial = rng.random(3) * length
        if positions:
            delta = np.array(positions) - trial
            delta -= length * np.round(delta / length)
            if np.min(np.linalg.norm(delta, axis=1)) < 1.5:
                continue
        positions.append(trial)
    charges = np.array([1.0, -1.0] * (n // 2))
    return np.array(positions), charges, length * np.eye(3)


_REFERENCE = {}


def reference(name):
    if name not in _REFERENCE:
        system = {"rocksalt": rocksalt, "random": random_box}[name]()
        _REFERENCE[name] = (*system, *ewald_sum(*system))
    return _REFERENCE[name]


def tensors(name):
    positions, charges, cell = reference(name)[:3]
    return (
        torch.tensor(charges, dtype=torch.float64).reshape(-1, 1),
        torch.tensor(cell, dtype=torch.float64),
        torch.tensor(positions, dtype=torch.float64),
    )


def run(name, method, accuracy, **fixed):
    """Parameters chosen by the engine, and the measured RMS force error."""
    charges, cell, positions = tensors(name)
    periodic = [True, True, True]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parameters = engine.choose_parameters(
            method, charges, cell, positions, periodic, accuracy, **fixed
        )
    calculator = engine.build_calculator(parameters, 1.0)
    result = engine.evaluate(
        calculator, parameters, charges, cell, positions, periodic, stress=False
    )
    forces = reference(name)[-1]
    error = math.sqrt(np.mean(np.sum((result.forces.numpy() - forces) ** 2, axis=1)))
    return parameters, error, [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("method", "smearing", "cutoff"),
    [("ewald", 0.8, None), ("pme", 1.2, None), ("p3m", 2.0, None),
     ("ewald", 0.9, 6.0), ("p3m", 1.0, 6.0)],
)  # fmt: skip
def test_a_fixed_smearing_is_kept_and_the_rest_tuned_around_it(
    method, smearing, cutoff
):
    accuracy = 1e-4
    parameters, measured, caught = run(
        "rocksalt", method, accuracy, smearing=smearing, cutoff=cutoff
    )
    assert parameters.smearing == smearing
    assert cutoff is None or parameters.cutoff == cutoff
    assert caught == []
    assert parameters.error <= accuracy
    assert measured <= SAFETY * parameters.error
    assert measured <= accuracy


def test_a_fixed_lr_wavelength_is_rated_and_a_miss_is_reported():
    accuracy = 1e-4
    fixed = {"params": {"lr_wavelength": 5.0}}
    parameters, measured, caught = run("rocksalt", "ewald", accuracy, **fixed)
    assert parameters.params["lr_wavelength"] == 5.0
    assert parameters.error > 10 * accuracy
    assert measured <= SAFETY * parameters.error
    assert len(caught) == 1
    factor = float(caught[0].split(" is ")[1].split(" times")[0])
    assert factor == pytest.approx(parameters.error / accuracy, rel=1e-2)
    assert "lr_wavelength" in caught[0]
    assert "mesh_hi" not in caught[0] and "nodes_hi" not in caught[0]


def test_fixed_mesh_and_smearing_and_cutoff_are_only_rated():
    fixed = {
        "cutoff": 5.0,
        "smearing": 1.0,
        "params": {"mesh_spacing": 2.0, "interpolation_nodes": 3},
    }
    parameters, measured, caught = run("random", "p3m", 1e-4, **fixed)
    assert parameters.as_dict() == {"method": "p3m", **fixed["params"], "cutoff": 5.0,
                                    "smearing": 1.0}  # fmt: skip
    assert len(caught) == 1 and "mesh_spacing" in caught[0]
    assert parameters.error / 30 <= measured <= SAFETY * parameters.error


ESTIMATE_CASES = [
    ("ewald", 1.0, 4.5, {"lr_wavelength": 1.2}),
    ("pme", 1.0, 4.5, {"mesh_spacing": 1.0, "interpolation_nodes": 4}),
    ("pme", 0.7, 4.5, {"mesh_spacing": 0.35, "interpolation_nodes": 6}),
    ("p3m", 1.0, 4.5, {"mesh_spacing": 1.5, "interpolation_nodes": 3}),
    ("p3m", 0.7, 4.5, {"mesh_spacing": 0.3, "interpolation_nodes": 5}),
    ("p3m", 1.2, 3.0, {"mesh_spacing": 0.8, "interpolation_nodes": 4}),
]


@pytest.mark.parametrize("name", ["rocksalt", "random"])
@pytest.mark.parametrize(("method", "smearing", "cutoff", "params"), ESTIMATE_CASES)
def test_estimate_error_predicts_measured_errors(
    name, method, smearing, cutoff, params
):
    charges, cell, positions = tensors(name)
    estimate = estimate_error(
        method, charges, cell, positions, cutoff, smearing, **params
    )
    parameters = engine.Parameters(method, cutoff, smearing, dict(params))
    calculator = engine.build_calculator(parameters, 1.0)
    result = engine.evaluate(
        calculator, parameters, charges, cell, positions, [True] * 3, stress=False
    )
    forces = reference(name)[-1]
    measured = math.sqrt(np.mean(np.sum((result.forces.numpy() - forces) ** 2, 1)))
    assert estimate / 30 <= measured <= SAFETY * estimate, (measured, estimate)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (("fft", 4.0, 1.0), ValueError, "method"),
        (("pme", -1.0, 1.0), ValueError, "cutoff"),
        (("pme", 4.0, 0.0), ValueError, "smearing"),
    ],
)
def test_estimate_error_names_bad_arguments(arguments, error, match):
    charges, cell, positions = tensors("random")
    method, cutoff, smearing = arguments
    with pytest.raises(error, match=match):
        estimate_error(method, charges, cell, positions, cutoff, smearing,
                       mesh_spacing=1.0)  # fmt: skip


def test_estimate_error_names_bad_parameters():
    charges, cell, positions = tensors("random")
    args = (charges, cell, positions, 4.0, 1.0)
    with pytest.raises(TypeError, match="mesh_spacing"):
        estimate_error("ewald", *args, mesh_spacing=1.0)
    with pytest.raises(TypeError, match="lr_wavelength"):
        estimate_error("ewald", *args)
    with pytest.raises(ValueError, match="interpolation_nodes"):
        estimate_error("pme", *args, mesh_spacing=1.0, interpolation_nodes=9)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_the_mesh_methods_meet_1e_8(method):
    accuracy = 1e-8
    parameters, measured, caught = run("random", method, accuracy, cutoff=5.0)
    assert caught == []
    assert parameters.error <= accuracy
    assert measured <= accuracy


def test_the_mesh_bound_follows_the_system():
    # 100,000 ions of rock salt: the 128-point cap cannot reach 1e-4
    repeat = 23
    grid = np.stack(np.meshgrid(*[np.arange(2 * repeat)] * 3, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    positions = torch.tensor(grid * NACL / 2, dtype=torch.float64)
    charges = torch.tensor((-1.0) ** grid.sum(axis=1), dtype=torch.float64)
    charges = charges.reshape(-1, 1)
    cell = torch.eye(3, dtype=torch.float64) * NACL * repeat
    cutoff = engine.default_cutoff(cell, len(positions))
    smearing = parameters._smearing("pme", charges, cell, positions, cutoff, 1e-4)
    bound = engine.grid_bounds("pme", smearing, cell)["mesh_hi"]
    length = float(cell[0, 0])

    def error(exponent):
        spacing = 2 * length / (2**exponent - 1)
        return estimate_error("pme", charges, cell, positions, cutoff, smearing,
                              mesh_spacing=spacing, interpolation_nodes=7)  # fmt: skip

    assert error(7) > 1e-4
    assert bound >= 8 and error(8) <= 1e-4 / SAFETY
