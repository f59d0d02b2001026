"""Tuning calls with the number forms users pass: floats, 0-dim tensors, NumPy scalars.

The tuners time their candidates, so only what does not depend on the clock is
compared: the smearing (a closed formula of the inputs) and the names of the chosen
parameters; the error bounds are compared as numbers.
"""

import numpy as np
import torch

from . import case
from ._systems import random_ions, rock_salt, with_neighbors

TWO_IONS = (
    torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.4, 0.4]], dtype=torch.float64),
    torch.tensor([[1.0], [-1.0]], dtype=torch.float64),
    torch.eye(3, dtype=torch.float64),
)


def _tuned(tuner, cutoff, accuracy=1e-3, dtype=torch.float64, **options):
    system = rock_salt(dtype=dtype)
    positions, charges, cell, indices, distances = with_neighbors(system, 3.0)
    smearing, params, _ = tuner(
        charges,
        cell,
        positions,
        cutoff,
        indices,
        distances,
        accuracy=accuracy,
        **options,
    )
    return float(smearing), sorted(params)


#: torch-pme converts the floats given to its error bounds with ``torch.tensor`` (to
#: float32 by default); ours keep them in float64
FLOAT64_BOUNDS = "the error bounds evaluate in float64, not in torch's default float32"

#: torch-pme computes the smearing in the precision of the cutoff it is given
FLOAT64_SMEARING = (
    "the smearing is computed in float64 from the cutoff's value, not in the "
    "cutoff's own precision (float32 for a float32 tensor or NumPy scalar)"
)


def _register_cutoff_forms(name, tuner_name, **options):
    forms = {
        "float": lambda: 3.0,
        "tensor0d": lambda: torch.tensor([3.0, 4.0])[0],
        "numpy_float64": lambda: np.float64(3.0),
        "numpy_float32": lambda: np.float32(3.0),
        "int": lambda: 3,
    }
    for form, make in forms.items():

        def run(torchpme, make=make):
            return _tuned(getattr(torchpme.tuning, tuner_name), make(), **options)

        run.__name__ = f"{name}_cutoff_{form}"
        run.__module__ = __name__
        single = form in ("tensor0d", "numpy_float32")
        case(differs=FLOAT64_SMEARING if single else None, within=1e-6)(run)


_register_cutoff_forms("tune_ewald", "tune_ewald")
_register_cutoff_forms("tune_pme", "tune_pme", mesh_hi=4, nodes_hi=4)
_register_cutoff_forms("tune_p3m", "tune_p3m", mesh_hi=4, nodes_hi=3)


@case()
def tune_pme_accuracy_numpy(torchpme):
    tune = torchpme.tuning.tune_pme
    return _tuned(tune, 3.0, np.float64(1e-3), mesh_hi=4, nodes_hi=4)


@case()
def tune_pme_accuracy_tensor0d(torchpme):
    tune = torchpme.tuning.tune_pme
    return _tuned(tune, 3.0, torch.tensor(1e-3), mesh_hi=4, nodes_hi=4)


@case()
def tune_ewald_exponent_2_refused(torchpme):
    positions, charges, cell, indices, distances = with_neighbors(rock_salt(), 3.0)
    return torchpme.tuning.tune_ewald(
        charges, cell, positions, 3.0, indices, distances, exponent=2
    )


@case()
def tune_pme_float32(torchpme):
    tune = torchpme.tuning.tune_pme
    return _tuned(tune, 3.0, dtype=torch.float32, mesh_hi=4, nodes_hi=4)


@case()
def tune_cutoff_estimate_smearing(torchpme):
    tuner = torchpme.tuning.tuner.TunerBase(
        TWO_IONS[1], TWO_IONS[2], TWO_IONS[0], 4.4, torchpme.PMECalculator
    )
    return tuner.estimate_smearing(1e-3)


@case()
def estimate_smearing_integer_accuracy(torchpme):
    tuner = torchpme.tuning.tuner.TunerBase(
        TWO_IONS[1], TWO_IONS[2], TWO_IONS[0], 4.4, torchpme.PMECalculator
    )
    return tuner.estimate_smearing(1)


@case(differs=FLOAT64_BOUNDS, within=1e-6)
def error_bounds_ewald(torchpme):
    bounds = torchpme.tuning.ewald.EwaldErrorBounds(
        TWO_IONS[1], TWO_IONS[2], TWO_IONS[0]
    )
    return bounds(smearing=1.0, lr_wavelength=0.5, cutoff=4.4)


@case(differs=FLOAT64_BOUNDS, within=1e-6)
def error_bounds_pme(torchpme):
    bounds = torchpme.tuning.pme.PMEErrorBounds(TWO_IONS[1], TWO_IONS[2], TWO_IONS[0])
    return [
        bounds(cutoff=4.4, smearing=1.0, mesh_spacing=0.5, interpolation_nodes=n)
        for n in (3, 4, 5, 6, 7)
    ]


@case(differs=FLOAT64_BOUNDS, within=1e-6)
def error_bounds_pme_positional(torchpme):
    bounds = torchpme.tuning.pme.PMEErrorBounds(TWO_IONS[1], TWO_IONS[2], TWO_IONS[0])
    return bounds.error(4.4, 1.0, 0.5, 3)


@case(differs=FLOAT64_BOUNDS, within=1e-6)
def error_bounds_p3m(torchpme):
    bounds = torchpme.tuning.p3m.P3MErrorBounds(TWO_IONS[1], TWO_IONS[2], TWO_IONS[0])
    return [
        bounds(smearing=1.0, mesh_spacing=0.5, cutoff=4.4, interpolation_nodes=n)
        for n in (1, 2, 3, 4, 5, 6, 7)
    ]


@case(
    differs="P3MErrorBounds.error computes the bound (torch-pme raises NotImplementedError)"
)
def error_bounds_p3m_error_method(torchpme):
    bounds = torchpme.tuning.p3m.P3MErrorBounds(TWO_IONS[1], TWO_IONS[2], TWO_IONS[0])
    return bounds.error(1.0, 0.5, 4.4, 3)


@case(differs=FLOAT64_BOUNDS, within=1e-6)
def error_bounds_tensor_arguments(torchpme):
    bounds = torchpme.tuning.pme.PMEErrorBounds(TWO_IONS[1], TWO_IONS[2], TWO_IONS[0])
    return bounds(
        cutoff=torch.tensor(4.4),
        smearing=torch.tensor(1.0),
        mesh_spacing=np.float64(0.5),
        interpolation_nodes=3,
    )


@case()
def p3m_a_coef(torchpme):
    return [
        [float(x) if x is not None else None for x in row]
        for row in torchpme.tuning.p3m.A_COEF
    ]


@case()
def tuning_timings_returns_float(torchpme):
    positions, charges, cell, indices, distances = with_neighbors(random_ions(), 3.0)
    timings = torchpme.tuning.tuner.TuningTimings(
        charges, cell, positions, indices, distances, n_repeat=1, n_warmup=1
    )
    calculator = torchpme.PMECalculator(torchpme.CoulombPotential(smearing=1.0))
    calculator.to(dtype=torch.float64)
    return type(timings(calculator)).__name__
