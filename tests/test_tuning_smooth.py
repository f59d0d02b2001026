"""Tuning with 5-smooth meshes (``smooth_meshes=True``): off by default, meets the
accuracy against the NumPy Ewald reference of test_tuning_accuracy.py, returns a
``fixed_mesh`` that builds the tuned calculator, and rejects a non-bool flag.

Timing-dependent choices are made deterministic where results are compared: the
timer is replaced by a function of the mesh size and node count, so the tuner
returns the cheapest accepted candidate of its cost model.
"""

import math
import warnings

import pytest
import torch
from test_tuning_accuracy import as_torch, distances, measured_errors

from torchpme import CoulombPotential, P3MCalculator, PMECalculator
from torchpme._core.kspace import mesh_size
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme
from torchpme.tuning._mesh import is_smooth, smooth_mesh_size, smooth_sizes
from torchpme.tuning.p3m import P3MErrorEstimate
from torchpme.tuning.pme import PMEErrorEstimate
from torchpme.tuning.tuner import GridSearchTuner, tune_cutoff

TUNERS = {
    "pme": (tune_pme, PMECalculator, PMEErrorEstimate),
    "p3m": (tune_p3m, P3MCalculator, P3MErrorEstimate),
}


def tuning_inputs(name):
    positions, charges, cell, cutoff, indices, shifts = as_torch(name)
    return (
        charges,
        cell,
        positions,
        cutoff,
        indices,
        distances(positions, cell, indices, shifts),
    )


def mesh_points(params, cell):
    """Mesh points of the calculator built from ``params``."""
    if "fixed_mesh" in params:
        return math.prod(params["fixed_mesh"])
    lengths = torch.linalg.norm(cell, dim=1).tolist()
    return math.prod(mesh_size(lengths, params["mesh_spacing"]))


@pytest.fixture
def deterministic_timing(monkeypatch):
    """Replace the timer by ``10·n³ + M`` (microseconds), nodes ``n``, points ``M``."""

    def fake_timing(self, smearing, params, give_up_after=None):
        nodes = params["interpolation_nodes"]
        return 1e-6 * (10 * nodes**3 + mesh_points(params, self.cell))

    monkeypatch.setattr(GridSearchTuner, "_timing", fake_timing)


# -- sizes ------------------------------------------------------------------------------


def test_smooth_sizes_are_the_5_smooth_integers():
    assert smooth_sizes(1, 30) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 16, 18, 20,
                                   24, 25, 27, 30]  # fmt: skip
    assert not any(is_smooth(n) for n in (7, 11, 14, 49, 77, 121))
    assert all(is_smooth(n) for n in (64, 72, 75, 81, 96, 100, 125, 128))


def test_smooth_mesh_size_rounds_up_to_the_next_5_smooth_size():
    # 2L/h + 1 = 2·10/1 + 1 = 21 → 24; 41 → 45; 13 → 15
    assert smooth_mesh_size([10.0, 20.0, 6.0], 1.0) == [24, 45, 15]
    # a spacing of 2L/(s − 1) gives exactly s, not the next size, despite rounding
    for size in smooth_sizes(2, 1024):
        assert smooth_mesh_size([11.3], 2 * 11.3 / (size - 1)) == [size]


# -- off by default -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_default_is_the_power_of_two_search(method, deterministic_timing):
    tune = TUNERS[method][0]
    inputs = tuning_inputs("triclinic")
    default = tune(*inputs, accuracy=1e-4)
    explicit = tune(*inputs, accuracy=1e-4, smooth_meshes=False)
    assert default == explicit
    assert set(default[1]) == {"interpolation_nodes", "mesh_spacing"}
    # the spacing is one of the grid's 2 L_min / (2^e − 1)
    shortest = float(torch.linalg.norm(inputs[1], dim=1).min())
    points = 2 * shortest / default[1]["mesh_spacing"] + 1
    assert points == pytest.approx(2 ** round(math.log2(points)))


def test_tune_cutoff_passes_the_option_on_only_when_set(deterministic_timing):
    charges, cell, positions, _, indices, dists = tuning_inputs("rocksalt")
    arguments = (charges, cell, positions, indices, dists)
    default = tune_cutoff(tune_p3m, *arguments, cutoffs=[3.5, 4.0], accuracy=1e-3)
    explicit = tune_cutoff(
        tune_p3m, *arguments, cutoffs=[3.5, 4.0], accuracy=1e-3, smooth_meshes=False
    )
    assert default == explicit
    assert "fixed_mesh" not in default[2]
    smooth = tune_cutoff(
        tune_p3m, *arguments, cutoffs=[3.5, 4.0], accuracy=1e-3, smooth_meshes=True
    )
    assert all(is_smooth(n) for n in smooth[2]["fixed_mesh"])


def test_tune_cutoff_default_still_works_with_tune_ewald():
    """``tune_ewald`` has no ``smooth_meshes``: tune_cutoff must not pass it on."""
    charges, cell, positions, _, indices, dists = tuning_inputs("rocksalt")
    arguments = (charges, cell, positions, indices, dists)
    result = tune_cutoff(tune_ewald, *arguments, cutoffs=[4.0], accuracy=1e-3)
    assert set(result[2]) == {"lr_wavelength"}


# -- smooth meshes --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_smooth_meshes_never_need_more_points_on_a_cubic_cell(
    method, deterministic_timing
):
    """On a cubic cell the 5-smooth candidates include the powers of two, so the
    cheapest accepted candidate can only get cheaper."""
    tune = TUNERS[method][0]
    inputs = tuning_inputs("rocksalt")
    t_power_of_two = tune(*inputs, accuracy=1e-4)[2]
    _, smooth, t_smooth = tune(*inputs, accuracy=1e-4, smooth_meshes=True)
    assert t_smooth <= t_power_of_two
    assert all(is_smooth(n) for n in smooth["fixed_mesh"])


CASES = [
    (method, name, accuracy)
    for method in ("pme", "p3m")
    for name in ("rocksalt", "triclinic")
    for accuracy in (1e-3, 1e-4)
]


@pytest.mark.parametrize(
    ("method", "name", "accuracy"),
    CASES,
    ids=[f"{m}-{n}-{a:.0e}" for m, n, a in CASES],
)
def test_smooth_tuned_calculator_meets_the_accuracy(
    method, name, accuracy, deterministic_timing
):
    """The accuracy is what is checked here: the cost model stands in for the
    timer, so no candidate is run."""
    tune, calculator_class, _ = TUNERS[method]
    inputs = tuning_inputs(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every case here is reachable
        smearing, params, timing = tune(*inputs, accuracy=accuracy, smooth_meshes=True)
    assert math.isfinite(timing) and timing > 0
    assert set(params) == {"interpolation_nodes", "mesh_spacing", "fixed_mesh"}
    assert len(params["fixed_mesh"]) == 3
    assert all(is_smooth(n) for n in params["fixed_mesh"])
    calculator = calculator_class(CoulombPotential(smearing=smearing), **params)
    assert calculator.fixed_mesh == params["fixed_mesh"]
    v_error, f_error = measured_errors(calculator, name)
    assert f_error <= accuracy, (params, f_error)
    assert v_error <= accuracy, (params, v_error)
    assert f_error >= accuracy / 100, (params, f_error)


# fixed parameters, real-space cutoff 8.5 σ: the k-space error dominates
MESH_CASES = [
    ("pme", 4, [15, 15, 15]),
    ("pme", 5, [9, 10, 12]),
    ("p3m", 2, [25, 25, 25]),
    ("p3m", 4, [15, 16, 18]),
]


@pytest.mark.parametrize(
    ("method", "nodes", "mesh"), MESH_CASES, ids=[str(c) for c in MESH_CASES]
)
def test_estimates_predict_errors_on_any_mesh(method, nodes, mesh):
    """The estimates take the mesh sizes as they are (odd, mixed), not only powers
    of two: within about 30 % of the measured error on a disordered system."""
    _, calculator_class, estimate_class = TUNERS[method]
    smearing, cutoff = 1.0, 8.5
    calculator = calculator_class(
        CoulombPotential(smearing=smearing), 1.0, nodes, fixed_mesh=mesh
    )
    _, measured = measured_errors(calculator, "liquid", cutoff)
    positions, charges, cell, _, _, _ = as_torch("liquid")
    estimate = estimate_class(charges, cell, positions)
    if method == "pme":
        estimated = estimate(cutoff, smearing, 1.0, nodes, fixed_mesh=mesh)
    else:
        estimated = estimate(smearing, 1.0, cutoff, nodes, fixed_mesh=mesh)
    assert 0.6 <= measured / float(estimated) <= 1.3


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
@pytest.mark.parametrize("tuner", ["pme", "p3m", "cutoff"])
def test_smooth_meshes_must_be_a_bool(tuner, value):
    charges, cell, positions, cutoff, indices, dists = tuning_inputs("rocksalt")
    with pytest.raises(TypeError, match="`smooth_meshes` must be True or False"):
        if tuner == "cutoff":
            tune_cutoff(
                tune_p3m, charges, cell, positions, indices, dists,
                smooth_meshes=value,
            )  # fmt: skip
        else:
            TUNERS[tuner][0](
                charges, cell, positions, cutoff, indices, dists, smooth_meshes=value
            )


@pytest.mark.parametrize("mesh", [[8, 8], [8, 0, 8], [8, 8.5, 8], 8])
def test_estimate_rejects_a_bad_fixed_mesh(mesh):
    positions, charges, cell, _, _, _ = as_torch("rocksalt")
    estimate = PMEErrorEstimate(charges, cell, positions)
    with pytest.raises(ValueError, match="`fixed_mesh`"):
        estimate(4.0, 1.0, 1.0, 4, fixed_mesh=mesh)
