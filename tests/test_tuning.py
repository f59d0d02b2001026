"""Tuning API: compatible error bounds, smearing estimate, grid search, timings,
warnings and input errors (accuracy against references: test_tuning_accuracy.py).

Expected numbers are the examples of the specification (API.md §7) or the
formulas of §7 evaluated here with ``math``.
"""

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from torchpme import CoulombPotential, EwaldCalculator, P3MCalculator, PMECalculator
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme
from torchpme.tuning._fourier import mesh_weight
from torchpme.tuning.ewald import EwaldErrorBounds, EwaldErrorEstimate
from torchpme.tuning.p3m import A_COEF, P3MErrorBounds, P3MErrorEstimate
from torchpme.tuning.pme import PMEErrorBounds, PMEErrorEstimate
from torchpme.tuning.tuner import (
    GridSearchTuner,
    TunerBase,
    TuningErrorBounds,
    TuningTimings,
    pareto_front,
    tune_cutoff,
)

DTYPE = torch.float64


def two_atoms(dtype=DTYPE):
    """The system of the specification's examples (API.md §7.2)."""
    charges = torch.tensor([[1.0], [-1.0]], dtype=dtype)
    cell = torch.eye(3, dtype=dtype)
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.4, 0.4]], dtype=dtype)
    return charges, cell, positions


def neighbor_list(positions, cell, cutoff):
    """Brute-force periodic half list over image shifts: (indices, distances)."""
    pos, box = positions.numpy(), cell.numpy()
    heights = 1.0 / np.linalg.norm(np.linalg.inv(box), axis=0)
    reach = [math.ceil(cutoff / h) for h in heights]
    pairs, shifts = [], []
    for shift in itertools.product(*[range(-r, r + 1) for r in reach]):
        for i, j in itertools.product(range(len(pos)), repeat=2):
            if i > j or (i == j and shift <= (0, 0, 0)):
                continue
            if np.linalg.norm(pos[j] + np.array(shift) @ box - pos[i]) < cutoff:
                pairs.append((i, j))
                shifts.append(shift)
    indices = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    shifts = torch.tensor(shifts, dtype=positions.dtype).reshape(-1, 3)
    vectors = positions[indices[:, 1]] + shifts @ cell - positions[indices[:, 0]]
    return indices, torch.linalg.norm(vectors, dim=1)


def small_crystal(dtype=DTYPE):
    """8-ion rock-salt cube (a = 4), rattled: a cheap system to tune."""
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=dtype)
    charges = ((-1.0) ** corners.sum(dim=1)).reshape(-1, 1)
    generator = torch.Generator().manual_seed(0)
    positions = 2.0 * corners + 0.1 * torch.randn(8, 3, generator=generator).to(dtype)
    cell = 4.0 * torch.eye(3, dtype=dtype)
    indices, distances = neighbor_list(positions, cell, 3.5)
    return charges, cell, positions, indices, distances


# -- compatible error bounds: the specification's numbers -----------------------------


def real_space(prefac, volume, smearing, cutoff):
    return (
        prefac / math.sqrt(cutoff * volume) * math.exp(-(cutoff**2) / 2 / smearing**2)
    )


def test_ewald_bound_example_and_formula():
    bounds = EwaldErrorBounds(*two_atoms())
    # API.md §7.5: σ = 1, λ = 0.5, r_c = 4.4 → 8.4304e-05
    assert float(bounds(1.0, 0.5, 4.4)) == pytest.approx(8.4304e-05, abs=5e-10)
    # safe-to-improve quirk: error() works too, same positional order
    assert float(bounds.error(1.0, 0.5, 4.4)) == float(bounds(1.0, 0.5, 4.4))
    prefac = 2 * 2.0 / math.sqrt(2)
    smearing, wavelength, cutoff = 0.3, 0.7, 1.1
    kspace = (
        math.sqrt(prefac)
        / smearing
        / math.pi
        / math.sqrt(1.0 / wavelength)
        * math.exp(-2 * (math.pi * smearing / wavelength) ** 2)
    )
    expected = math.hypot(kspace, real_space(prefac, 1.0, smearing, cutoff))
    assert float(bounds(smearing, wavelength, cutoff)) == pytest.approx(expected, 1e-12)


def test_pme_bound_example_and_formula():
    bounds = PMEErrorBounds(*two_atoms())
    # API.md §7.6, positional order (cutoff, smearing, mesh_spacing, nodes) → 0.0011
    assert float(bounds.error(4.4, 1.0, 0.5, 3)) == pytest.approx(0.0011, abs=5e-5)
    assert float(bounds(4.4, 1.0, 0.5, 3)) == float(bounds.error(4.4, 1.0, 0.5, 3))
    prefac = 2 * 2.0 / math.sqrt(2)
    cutoff, smearing, spacing, n = 2.0, 0.6, 0.3, 5
    h = 1.0 / (2.0 / spacing + 1.0)
    alpha = 1 / math.sqrt(2) / smearing
    kspace = (
        prefac
        * math.pi**0.25
        * math.sqrt(6 * alpha / (2 * n + 1))
        * (math.sqrt(2) * h / smearing) ** n
        / math.factorial(n)
        * math.exp(n * (math.log(n / 2) - 1) / 2)
        * 0.950
    )
    expected = math.hypot(kspace, real_space(prefac, 1.0, smearing, cutoff))
    assert float(bounds(cutoff, smearing, spacing, n)) == pytest.approx(expected, 1e-12)


def test_p3m_bound_example_and_formula():
    bounds = P3MErrorBounds(*two_atoms())
    # API.md §7.7, positional order (smearing, mesh_spacing, cutoff, nodes) → 0.0005
    assert float(bounds(1.0, 0.5, 4.4, 3)) == pytest.approx(0.0005, abs=5e-5)
    assert float(bounds.error(1.0, 0.5, 4.4, 3)) == float(bounds(1.0, 0.5, 4.4, 3))
    prefac = 2 * 2.0 / math.sqrt(2)
    smearing, spacing, cutoff, n = 0.6, 0.3, 2.0, 4
    x = 1.0 / (2.0 / spacing + 1.0) / math.sqrt(2) / smearing
    table = [Fraction(1, 4320), Fraction(3, 1936), Fraction(7601, 2271360)]
    table.append(Fraction(143, 28800))
    series = sum(float(a) * x ** (2 * m) for m, a in enumerate(table))
    alpha = 1 / math.sqrt(2) / smearing
    kspace = prefac * x**n * math.sqrt(alpha * math.sqrt(2 * math.pi) * series)
    expected = math.hypot(kspace, real_space(prefac, 1.0, smearing, cutoff))
    assert float(bounds(smearing, spacing, cutoff, n)) == pytest.approx(expected, 1e-12)


def test_bounds_follow_the_dtype_of_the_charges():
    for dtype in (torch.float32, torch.float64):
        charges, cell, positions = two_atoms(dtype)
        assert EwaldErrorBounds(charges, cell, positions)(1.0, 0.5, 4.4).dtype == dtype
        assert PMEErrorBounds(charges, cell, positions)(4.4, 1.0, 0.5, 3).dtype == dtype
        assert P3MErrorBounds(charges, cell, positions)(1.0, 0.5, 4.4, 3).dtype == dtype


def test_bounds_reject_unsupported_node_counts():
    with pytest.raises(ValueError, match="interpolation_nodes"):
        PMEErrorBounds(*two_atoms()).error(4.4, 1.0, 0.5, 2)
    with pytest.raises(ValueError, match="interpolation_nodes"):
        P3MErrorBounds(*two_atoms())(1.0, 0.5, 4.4, 8)


def test_a_coef_is_the_published_table():
    assert len(A_COEF) == 7 and all(len(row) == 8 for row in A_COEF)
    for m, n in itertools.product(range(7), range(8)):
        assert (A_COEF[m][n] is None) == (n == 0 or m >= n)
    # corners and the entries with the largest numerators (API.md §7.7)
    assert A_COEF[0][1] == Fraction(2, 3)
    assert A_COEF[0][6] == Fraction(691, 68140800)
    assert A_COEF[1][5] == Fraction(7601, 13628160)
    assert A_COEF[5][7] == Fraction(1755948832039, 36229939200000)
    assert A_COEF[6][7] == Fraction(4887769399, 37838389248)
    assert all(isinstance(a, Fraction) for row in A_COEF for a in row if a)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_pme_rms_constants_are_rms_of_the_node_polynomial(n):
    # RMS over one cell of ω_n(u) = Π_j (u − u_j), nodes at the integers around u
    nodes = np.arange(n) - (n - 1) // 2 if n % 2 else np.arange(n) - (n // 2 - 1)
    u = np.linspace(-0.5, 0.5, 200001) if n % 2 else np.linspace(0.0, 1.0, 200001)
    rms = math.sqrt(np.mean(np.prod(u[:, None] - nodes[None], axis=1) ** 2))
    charges, cell, positions = two_atoms()
    bounds = PMEErrorBounds(charges, cell, positions)
    smearing, spacing = torch.tensor(1.0, dtype=DTYPE), torch.tensor(0.5, dtype=DTYPE)
    value = float(bounds.err_kspace(smearing, spacing, n))
    # the bound is linear in RMS_n: recover it from the formula without it
    alpha = 1 / math.sqrt(2)
    h = 1.0 / (2.0 / 0.5 + 1.0)
    rest = (
        float(bounds.prefac)
        * math.pi**0.25
        * math.sqrt(6 * alpha / (2 * n + 1))
        * (math.sqrt(2) * h) ** n
        / math.factorial(n)
        * math.exp(n * (math.log(n / 2) - 1) / 2)
    )
    assert value / rest == pytest.approx(float(f"{rms:.3g}"), rel=1e-9)


def test_base_error_bounds():
    bounds = TuningErrorBounds(*two_atoms())
    with pytest.raises(NotImplementedError):
        bounds.error(1.0)
    with pytest.raises(NotImplementedError):
        bounds(1.0)  # forward delegates to error


# -- smearing estimate, filter, base-class checks ------------------------------------


def test_estimate_smearing_example_and_definition():
    tuner = TunerBase(*two_atoms(), 4.4, EwaldCalculator)
    assert tuner.estimate_smearing(1e-3) == pytest.approx(1.1069526756106463, 1e-14)
    # the real-space bound at that smearing is accuracy / 2
    for accuracy in (1e-2, 1e-5):
        smearing = tuner.estimate_smearing(accuracy)
        prefac = 2 * 2.0 / math.sqrt(2)
        value = real_space(prefac, 1.0, smearing, 4.4)
        assert value == pytest.approx(accuracy / 2, rel=1e-12)


@pytest.mark.parametrize("accuracy", [1, "1e-3", np.float32(1e-3), True, None])
def test_estimate_smearing_rejects_non_float_accuracy(accuracy):
    tuner = TunerBase(*two_atoms(), 4.4, EwaldCalculator)
    with pytest.raises(ValueError, match="accuracy"):
        tuner.estimate_smearing(accuracy)


@pytest.mark.parametrize("accuracy", [0.0, -1e-3, float("nan"), float("inf"), 100.0])
def test_estimate_smearing_rejects_bad_accuracy_values(accuracy):
    tuner = TunerBase(*two_atoms(), 4.4, EwaldCalculator)
    with pytest.raises(ValueError, match="accuracy"):
        tuner.estimate_smearing(accuracy)


def test_filter_neighbors_is_strict():
    indices = torch.tensor([[0, 1], [1, 2], [0, 2]])
    distances = torch.tensor([1.0, 2.0, 3.0])
    kept, kept_distances = TunerBase.filter_neighbors(2.0, indices, distances)
    assert kept.tolist() == [[0, 1]]
    assert kept_distances.tolist() == [1.0]


def test_tuner_base_checks():
    charges, cell, positions = two_atoms()
    # exponent first, whatever else is wrong
    with pytest.raises(NotImplementedError):
        TunerBase(charges, cell, positions, -1.0, EwaldCalculator, exponent=2)
    for cutoff in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cutoff"):
            TunerBase(charges, cell, positions, cutoff, EwaldCalculator)
    with pytest.raises(TypeError, match="cutoff"):
        TunerBase(charges, cell, positions, "4.4", EwaldCalculator)
    with pytest.raises(TypeError, match="calculator"):
        TunerBase(charges, cell, positions, 4.4, CoulombPotential)
    with pytest.raises(ValueError, match="positions"):
        TunerBase(charges[:0], cell, positions[:0], 4.4, EwaldCalculator)
    with pytest.raises(ValueError, match="charges"):
        TunerBase(0 * charges, cell, positions, 4.4, EwaldCalculator)
    with pytest.raises(ValueError, match="cell"):
        TunerBase(charges, 0 * cell, positions, 4.4, EwaldCalculator)
    with pytest.raises(ValueError, match="positions"):
        TunerBase(charges, cell, positions * float("nan"), 4.4, EwaldCalculator)
    with pytest.raises(NotImplementedError):
        TunerBase(charges, cell, positions, 4.4, EwaldCalculator).tune()


# -- timings ---------------------------------------------------------------------------


class CountingCalculator(torch.nn.Module):
    """Counts calls; potential q·|r|² so that every input gets a gradient."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, charges, cell, positions, neighbor_indices, neighbor_distances):
        self.calls += 1
        return charges * torch.sum(positions**2, dim=1, keepdim=True) + cell.sum()


def test_timings_call_counts_and_mean():
    charges, cell, positions = two_atoms()
    empty = torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=DTYPE)
    calculator = CountingCalculator()
    timings = TuningTimings(charges, cell, positions, *empty, n_repeat=3, n_warmup=2)
    seconds = timings(calculator)
    assert calculator.calls == 5
    assert 0 < seconds < 1
    budget = TuningTimings(
        charges, cell, positions, *empty, n_repeat=50, n_warmup=0, time_budget=0.0
    )
    calculator.calls = 0
    budget(calculator)
    assert calculator.calls == 1  # the budget is used up by the first repetition
    with pytest.raises(ValueError, match="n_repeat"):
        TuningTimings(charges, cell, positions, *empty, n_repeat=True)
    with pytest.raises(ValueError, match="n_warmup"):
        TuningTimings(charges, cell, positions, *empty, n_warmup=-1)


class RecordingCalculator(torch.nn.Module):
    """Records which inputs require a gradient and the gradient its output gets."""

    def forward(self, charges, cell, positions, neighbor_indices, neighbor_distances):
        self.requires = (charges.requires_grad, cell.requires_grad)
        result = charges * torch.sum(positions**2, dim=1, keepdim=True)
        result.register_hook(lambda grad: setattr(self, "upstream", grad.clone()))
        return result


@pytest.mark.parametrize("workload", ["sum", "forces"])
def test_timings_workloads(workload):
    charges, cell, positions = two_atoms()
    empty = torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=DTYPE)
    calculator = RecordingCalculator()
    timings = TuningTimings(
        charges, cell, positions, *empty, n_repeat=1, n_warmup=0, workload=workload
    )
    assert timings(calculator) > 0
    if workload == "sum":
        assert calculator.requires == (True, True)
        assert torch.equal(calculator.upstream, torch.ones_like(charges))
    else:  # the gradient of the energy Σ q V: the charges themselves
        assert calculator.requires == (False, False)
        assert torch.equal(calculator.upstream, charges)


def test_timings_workload_checked():
    charges, cell, positions = two_atoms()
    empty = torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=DTYPE)
    with pytest.raises(ValueError, match="`workload`"):
        TuningTimings(charges, cell, positions, *empty, workload="stress")


def test_grid_search_times_several_repetitions_with_backward():
    charges, cell, positions, indices, distances = small_crystal()
    tuner = GridSearchTuner(
        charges,
        cell,
        positions,
        3.0,
        EwaldCalculator,
        EwaldErrorBounds(charges, cell, positions),
        [{"lr_wavelength": 1.0}],
        indices,
        distances,
    )
    # torch-pme 0.5 passed True as n_repeat (one repetition); fixed
    assert tuner.time_func.n_repeat >= 3
    assert tuner.time_func.run_backward is True
    # the energy + forces step, not the backward of the summed potentials
    assert tuner.time_func.workload == "forces"
    # the neighbour list is filtered to the cutoff
    assert float(tuner.time_func.neighbor_distances.max()) < 3.0
    assert len(tuner.time_func.neighbor_distances) < len(distances)


# -- pruning: only candidates that can win are timed -------------------------------------


def test_pareto_front():
    costs = [(3, 100), (4, 50), (3, 200), (5, 50), (2, 400), (3, 100)]
    # (3,200) and (5,50) are dominated; the repeated (3,100) keeps its first copy
    assert pareto_front(costs) == [0, 1, 4]


class FixedErrors(TuningErrorBounds):
    def __init__(self, values):
        super().__init__(*two_atoms())
        self.values = values

    def error(self, smearing, cutoff, index):
        return torch.tensor(self.values[index], dtype=DTYPE)


class RecordingTuner(GridSearchTuner):
    def _timing(self, smearing, k_space_params, give_up_after=None):
        self.timed.append(k_space_params["index"])
        return 1.0 + k_space_params["index"]


def recording_tuner(errors, costs, work=None):
    charges, cell, positions, indices, distances = small_crystal()
    tuner = RecordingTuner(
        charges,
        cell,
        positions,
        3.0,
        EwaldCalculator,
        FixedErrors(errors),
        [{"index": i} for i in range(len(errors))],
        indices,
        distances,
        cost=lambda p: costs[p["index"]],
        work=work,
    )
    tuner.timed = []
    return tuner


def test_grid_search_times_only_accepted_pareto_candidates():
    errors = [5e-3, 5e-4, 2e-4, 1e-4, 5e-5, 9e-4]
    costs = [(1,), (2,), (3,), (4,), (5,), (6,)]
    tuner = recording_tuner(errors, costs)
    values, timings = tuner.tune(1e-3)
    assert values == pytest.approx(errors)
    # candidate 0 misses the accuracy; of the rest, 1 uses the fewest resources
    assert tuner.timed == [1]
    assert timings[1] == 2.0
    assert all(math.isinf(t) for i, t in enumerate(timings) if i != 1)


def test_grid_search_limits_timing_by_the_cost_model():
    errors = [1e-4] * 5
    costs = [(3, 400), (4, 200), (5, 100), (6, 50), (7, 10)]  # all on the front
    work = {0: 10.0, 1: 12.0, 2: 30.0, 3: 50.0, 4: 11.0}
    tuner = recording_tuner(errors, costs, work=lambda p: work[p["index"]])
    tuner.tune(1e-3)
    # cheapest first, at most three, none beyond 4× the cheapest model cost
    assert tuner.timed == [0, 4, 1]
    tuner = recording_tuner(errors, costs, work=lambda p: work[p["index"]])
    tuner.max_timed = 5
    tuner.tune(1e-3)
    assert tuner.timed == [0, 4, 1, 2]


# -- tune_* end to end ------------------------------------------------------------------


def test_tune_functions_return_compatible_parameters():
    charges, cell, positions, indices, distances = small_crystal()
    lengths = torch.linalg.norm(cell, dim=1)
    smearing, params, timing = tune_ewald(
        charges, cell, positions, 3.0, indices, distances, accuracy=1e-3
    )
    assert set(params) == {"lr_wavelength"}
    grid = [float(lengths.min()) / ns for ns in range(1, 15)]
    assert any(params["lr_wavelength"] == pytest.approx(g) for g in grid)
    assert math.isfinite(timing) and timing > 0
    assert smearing == pytest.approx(
        TunerBase(charges, cell, positions, 3.0, EwaldCalculator).estimate_smearing(
            1e-3
        )
    )
    for tune, calculator, nodes in (
        (tune_pme, PMECalculator, range(3, 8)),
        (tune_p3m, P3MCalculator, range(2, 6)),
    ):
        smearing, params, timing = tune(
            charges, cell, positions, 3.0, indices, distances, accuracy=1e-3
        )
        assert set(params) == {"interpolation_nodes", "mesh_spacing"}
        assert params["interpolation_nodes"] in nodes
        spacings = [2 * float(lengths.min()) / (2**e - 1) for e in range(2, 8)]
        assert any(params["mesh_spacing"] == pytest.approx(s) for s in spacings)
        assert math.isfinite(timing) and timing > 0
        # the parameters build a working calculator
        result = calculator(CoulombPotential(smearing=smearing), **params)(
            charges, cell, positions, indices, distances
        )
        assert result.shape == (8, 1)


@pytest.mark.parametrize(
    ("tune", "options"),
    [
        (tune_ewald, {"ns_hi": 3}),
        (tune_pme, {"mesh_hi": 2}),
        (tune_p3m, {"mesh_hi": 2}),
    ],
    ids=["ewald", "pme", "p3m"],
)
def test_unreachable_accuracy_warns_and_returns_smallest_error(tune, options):
    charges, cell, positions, indices, distances = small_crystal()
    with pytest.warns(UserWarning, match="No parameter set meets the accuracy"):
        _, params, timing = tune(
            charges, cell, positions, 3.0, indices, distances, accuracy=1e-8, **options
        )
    assert math.isinf(timing)  # not timed
    if tune is tune_ewald:
        # the finest candidate has the smallest error
        assert params["lr_wavelength"] == pytest.approx(4.0 / 3)
    else:
        assert params["mesh_spacing"] == pytest.approx(2 * 4.0 / 3)


def test_reachable_accuracy_does_not_warn():
    charges, cell, positions, indices, distances = small_crystal()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tune_p3m(charges, cell, positions, 3.0, indices, distances, accuracy=1e-2)


@pytest.mark.parametrize("tune", [tune_ewald, tune_pme, tune_p3m])
def test_tune_input_errors(tune):
    charges, cell, positions, indices, distances = small_crystal()
    args = (charges, cell, positions, 3.0, indices, distances)
    for accuracy in (1, "0.001", None):
        with pytest.raises(ValueError, match="accuracy"):
            tune(*args, accuracy=accuracy)
    for accuracy in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="accuracy"):
            tune(*args, accuracy=accuracy)
    for cutoff in (0.0, -3.0):
        with pytest.raises(ValueError, match="cutoff"):
            tune(charges, cell, positions, cutoff, indices, distances)
    with pytest.raises(NotImplementedError):
        tune(*args, exponent=6)
    with pytest.raises(ValueError, match="positions"):
        tune(charges[:0], cell, positions[:0], 3.0, indices[:0], distances[:0])
    with pytest.raises(ValueError, match="neighbor_distances"):
        tune(charges, cell, positions, 3.0, indices, distances[:-1])
    with pytest.raises(TypeError, match="cell"):
        tune(charges, cell.to(torch.float32), positions, 3.0, indices, distances)
    # the tuners are a front door: values of the neighbour list are checked too
    for bad in (indices + 8, indices - 8):
        with pytest.raises(ValueError, match="neighbor_indices"):
            tune(charges, cell, positions, 3.0, bad, distances)
    with pytest.raises(ValueError, match="neighbor_distances"):
        tune(charges, cell, positions, 3.0, indices, distances * float("inf"))


def test_grid_range_errors():
    charges, cell, positions, indices, distances = small_crystal()
    args = (charges, cell, positions, 3.0, indices, distances)
    with pytest.raises(ValueError, match="ns_hi"):
        tune_ewald(*args, ns_lo=5, ns_hi=4)
    with pytest.raises(ValueError, match="nodes_lo"):
        tune_pme(*args, nodes_lo=2)
    with pytest.raises(ValueError, match="nodes_hi"):
        tune_p3m(*args, nodes_hi=6)
    with pytest.raises(TypeError, match="mesh_hi"):
        tune_pme(*args, mesh_hi=5.0)


def test_float32_systems_can_be_tuned():
    charges, cell, positions, indices, distances = small_crystal(torch.float32)
    smearing, params, timing = tune_pme(
        charges, cell, positions, 3.0, indices, distances, accuracy=1e-3
    )
    assert math.isfinite(timing)
    bounds = PMEErrorEstimate(charges, cell, positions)
    assert bounds(3.0, smearing, **params).dtype == torch.float32


# -- cutoff suggestion ------------------------------------------------------------------


def test_tune_cutoff_returns_the_fastest_setting_that_meets_the_accuracy(monkeypatch):
    charges, cell, positions = small_crystal()[:3]
    indices, distances = neighbor_list(positions, cell, 3.9)
    seen = []

    def fake_tune(charges, cell, positions, cutoff, indices, distances, **kwargs):
        seen.append((cutoff, float(distances.max()), kwargs["accuracy"]))
        if cutoff < 3.0:
            warnings.warn("No parameter set meets the accuracy requirement")
            return 0.5, {"lr_wavelength": 9.0}, float("inf")
        return cutoff / 4, {"lr_wavelength": cutoff}, abs(cutoff - 3.5)

    cutoff, smearing, params, timing = tune_cutoff(
        fake_tune,
        charges,
        cell,
        positions,
        indices,
        distances,
        cutoffs=[3.8, 2.0, 3.4],
        accuracy=1e-4,
    )
    assert [s[0] for s in seen] == [2.0, 3.4, 3.8]
    assert all(s[2] == 1e-4 for s in seen)
    assert (cutoff, smearing, params, timing) == (
        3.4,
        0.85,
        {"lr_wavelength": 3.4},
        pytest.approx(0.1),
    )
    with pytest.warns(UserWarning, match="No cutoff"):
        result = tune_cutoff(
            fake_tune, charges, cell, positions, indices, distances, cutoffs=[1.0, 2.0]
        )
    assert result[0] == 2.0
    with pytest.raises(ValueError, match="cutoff"):
        tune_cutoff(fake_tune, charges, cell, positions, indices, distances, [0.0])


def test_tune_cutoff_with_a_real_tuner_defaults_to_the_neighbour_list():
    charges, cell, positions = small_crystal()[:3]
    indices, distances = neighbor_list(positions, cell, 3.9)
    cutoff, smearing, _, timing = tune_cutoff(
        tune_p3m, charges, cell, positions, indices, distances, accuracy=1e-3
    )
    largest = float(distances.max())
    candidates = [0.6 * largest, 0.75 * largest, 0.9 * largest]
    assert cutoff == pytest.approx(largest) or any(
        cutoff == pytest.approx(c) for c in candidates
    )
    assert math.isfinite(timing)
    # the returned smearing is the one estimate_smearing gives for that cutoff
    tuner = TunerBase(charges, cell, positions, cutoff, P3MCalculator)
    assert smearing == pytest.approx(tuner.estimate_smearing(1e-3))


# -- the estimates' building blocks ------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_bspline_transform_is_a_power_of_sinc(n):
    weight = mesh_weight("P3M", n)
    theta = np.linspace(-9.0, 9.0, 37)
    w, dw = weight.transform(theta)
    expected = np.sinc(theta / (2 * math.pi)) ** n
    np.testing.assert_allclose(w, expected, atol=1e-12)
    # derivative: iθ ŵ where w is continuous (n ≥ 2); NGP has no gradient
    np.testing.assert_allclose(dw, 1j * theta * expected if n > 1 else 0, atol=1e-11)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_alias_sums_match_brute_force_sums_of_sinc(n):
    weight = mesh_weight("P3M", n)
    theta = np.linspace(-3.0, 3.0, 13)
    aliases = theta[:, None] + 2 * math.pi * np.arange(-4000, 4001)[None]
    w = np.sinc(aliases / (2 * math.pi)) ** n
    for harmonic in (0, 1, -2):
        shifted = np.sinc((aliases - 2 * math.pi * harmonic) / (2 * math.pi)) ** n
        ww, dw, dd = weight.alias_sums(theta, harmonic)
        np.testing.assert_allclose(ww, np.sum(w * shifted, axis=1), atol=1e-10)
        np.testing.assert_allclose(
            dw, np.sum(1j * aliases * w * shifted, axis=1), atol=1e-6
        )
        if harmonic == 0 and n > 2:
            np.testing.assert_allclose(
                dd, np.sum((aliases * w) ** 2, axis=1), atol=1e-6
            )


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_lagrange_weight_interpolates_polynomials(n):
    weight = mesh_weight("Lagrange", n)
    u = np.linspace(-0.49, 0.49, 11)
    nodes = np.arange(-n, n + 1)
    w = weight._value(u[:, None] - nodes[None], False)
    for power in range(n):  # exact for polynomials of degree < n
        np.testing.assert_allclose(
            w @ nodes.astype(float) ** power, u**power, atol=1e-10
        )


def test_estimates_decrease_with_resolution():
    charges, cell, positions, _, _ = small_crystal()
    pme = PMEErrorEstimate(charges, cell, positions)
    p3m = P3MErrorEstimate(charges, cell, positions)
    ewald = EwaldErrorEstimate(charges, cell, positions)
    for nodes in (3, 5):
        errors = [float(pme(20.0, 1.0, h, nodes)) for h in (2.0, 1.0, 0.5, 0.25)]
        assert errors == sorted(errors, reverse=True)
    for nodes in (2, 4):
        errors = [float(p3m(1.0, h, 20.0, nodes)) for h in (2.0, 1.0, 0.5, 0.25)]
        assert errors == sorted(errors, reverse=True)
    errors = [float(ewald(1.0, wavelength, 20.0)) for wavelength in (2.0, 1.0, 0.5)]
    assert errors == sorted(errors, reverse=True)
    # a k-set covering the whole Gaussian leaves only the real-space term
    tiny = float(ewald(1.0, 0.05, 20.0))
    assert tiny == pytest.approx(
        float(
            EwaldErrorBounds(charges, cell, positions).err_rspace(
                torch.tensor(1.0, dtype=DTYPE), torch.tensor(20.0, dtype=DTYPE)
            )
        ),
        rel=1e-9,
    )


def test_estimate_components_and_their_combination():
    charges, cell, positions, _, _ = small_crystal()
    estimate = PMEErrorEstimate(charges, cell, positions)
    components = estimate.components(1.0, 3.0, (8, 8, 8, 4))
    assert set(components) == {
        "force_real",
        "force_kspace",
        "potential_real",
        "potential_kspace",
    }
    total = float(estimate(3.0, 1.0, 1.2, 4))  # mesh_spacing 1.2 → 8 points
    force = math.hypot(components["force_real"], components["force_kspace"])
    potential = math.hypot(components["potential_real"], components["potential_kspace"])
    assert total == pytest.approx(max(force, potential))
    # real-space force term is Kolafa–Perram's, as in the compatible bounds
    bounds = EwaldErrorBounds(charges, cell, positions)
    one, three = (torch.tensor(x, dtype=DTYPE) for x in (1.0, 3.0))
    assert components["force_real"] == pytest.approx(
        float(bounds.err_rspace(one, three))
    )


def test_one_atom_still_needs_reciprocal_space():
    # forces vanish by symmetry; the potential misses the images' k-space sum
    charges = torch.ones((1, 1), dtype=DTYPE)
    cell = 4.0 * torch.eye(3, dtype=DTYPE)
    positions = torch.zeros((1, 3), dtype=DTYPE)
    estimate = EwaldErrorEstimate(charges, cell, positions)
    components = estimate.components(1.0, 5.0, (1, 1, 1))
    assert components["force_kspace"] == 0.0
    # only k = 0 kept: the missing part of the self-image sum is (1/V) Σ_k G(k)
    assert components["potential_kspace"] > 1e-2


def test_estimate_safety_factor_scales_the_result():
    charges, cell, positions, _, _ = small_crystal()
    plain = float(P3MErrorEstimate(charges, cell, positions)(1.0, 0.5, 3.0, 4))
    safe = float(
        P3MErrorEstimate(charges, cell, positions, safety=2.0)(1.0, 0.5, 3.0, 4)
    )
    assert safe == pytest.approx(2.0 * plain)
    with pytest.raises(ValueError, match="safety"):
        P3MErrorEstimate(charges, cell, positions, safety=0.0)


def test_candidates_over_the_memory_budget_are_skipped(monkeypatch):
    """The fine end of the grid on a large cell would be refused by the calculator
    (its mesh is over the budget): the search leaves it out instead of failing."""
    from torchpme._core import workload

    charges, cell, positions, indices, distances = small_crystal()
    # 64³ points (and finer) no longer fit; 32³ and coarser do
    bytes_per_point = workload.LIMITS["bytes_per_mesh_point"]
    monkeypatch.setitem(workload.LIMITS, "memory_bytes", 40**3 * bytes_per_point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, params, _ = tune_pme(
            charges, cell, positions, 3.0, indices, distances, mesh_hi=7, nodes_hi=4
        )
    calculator = PMECalculator(CoulombPotential(smearing=1.0), **params)
    assert max(calculator._mesh_size(cell)) <= 32
    monkeypatch.setitem(workload.LIMITS, "memory_bytes", 1.0)  # nothing fits
    with pytest.raises(ValueError, match=r"mesh_lo.*memory budget"):
        tune_pme(charges, cell, positions, 3.0, indices, distances)
