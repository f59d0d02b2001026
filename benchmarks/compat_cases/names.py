"""The names of the public API (API.md §1), the version, and the names reached by path
that the other modules do not call: GridSearchTuner, TuningErrorBounds, the mesh
k-vectors and the private slab correction that user code imports."""

import importlib

import torch

from . import case
from ._systems import random_ions, rock_salt, with_neighbors

MODULES = [
    "torchpme",
    "torchpme.calculators",
    "torchpme.potentials",
    "torchpme.tuning",
    "torchpme.metatensor",
]
EXTRA = {
    "torchpme": "adds set_value_checks and keep_freed_memory to torchpme.__all__",
    "torchpme.tuning": "adds tune_cutoff (the cutoff tuned too) to torchpme.tuning.__all__",
}


def _names(torchpme, module: str):
    return sorted(importlib.import_module(module).__all__)


for _module in MODULES:

    def _run(torchpme, module=_module):
        return _names(torchpme, module)

    _run.__name__ = f"all_of_{_module.replace('.', '_')}"
    _run.__module__ = __name__
    case(differs=EXTRA.get(_module))(_run)


@case(differs="torchpme.lib.__all__ names only names that exist (API §10, safe 1)")
def all_of_torchpme_lib(torchpme):
    return _names(torchpme, "torchpme.lib")


@case()
def every_documented_name_is_reachable(torchpme):
    paths = {
        "torchpme": "Calculator CalculatorDipole EwaldCalculator P3MCalculator "
        "PMECalculator CombinedPotential CoulombPotential InversePowerLawPotential "
        "Potential PotentialDipole SplinePotential",
        "torchpme.lib": "KSpaceFilter KSpaceKernel P3MKSpaceFilter "
        "compute_batched_kvectors generate_kvectors_for_ewald "
        "generate_kvectors_for_mesh get_ns_mesh exp1 gamma gammaincc_over_powerlaw "
        "MeshInterpolator CubicSpline CubicSplineReciprocal "
        "compute_second_derivatives compute_spline_ft",
        "torchpme.prefactors": "SI eV_A kcalmol_A kJmol",
        "torchpme.tuning.tuner": "TuningErrorBounds TunerBase GridSearchTuner "
        "TuningTimings",
        "torchpme.tuning.ewald": "tune_ewald EwaldErrorBounds",
        "torchpme.tuning.pme": "tune_pme PMEErrorBounds",
        "torchpme.tuning.p3m": "tune_p3m P3MErrorBounds A_COEF",
        "torchpme.metatensor": "Calculator EwaldCalculator P3MCalculator PMECalculator",
        "torchpme.potentials.coulomb": "_pbc_correction",
        "torchpme._utils": "_validate_parameters",
    }
    return {
        path: [hasattr(importlib.import_module(path), n) for n in names.split()]
        for path, names in paths.items()
    }


@case(differs="`from torchpme.lib import *` works (AttributeError in torch-pme)")
def star_import_of_lib(torchpme):
    namespace = {}
    exec("from torchpme.lib import *", namespace)
    return sorted(name for name in namespace if not name.startswith("__"))


@case()
def version(torchpme):
    return torchpme.__version__, tuple(torchpme.__version_tuple__)[:3]


@case()
def kvectors_for_mesh(torchpme):
    cell = random_ions()[2]
    return torchpme.lib.generate_kvectors_for_mesh(cell, torch.tensor([4, 5, 6]))


@case()
def kvectors_for_mesh_float32(torchpme):
    cell = random_ions(dtype=torch.float32)[2]
    return torchpme.lib.generate_kvectors_for_mesh(cell, torch.tensor([3, 3, 4]))


@case()
def slab_correction(torchpme):
    from torchpme.potentials.coulomb import _pbc_correction

    positions, charges, cell = random_ions(n=6, skew=False)
    cell = cell.clone()
    cell[2, 2] = 20.0
    return [
        _pbc_correction(periodic, positions, cell, charges)
        for periodic in (
            None,
            torch.tensor([True, True, False]),
            torch.tensor([False, True, True]),
            torch.tensor([True, False, False]),
        )
    ]


@case()
def tuning_error_bounds_base(torchpme):
    positions, charges, cell = rock_salt()
    bounds = torchpme.tuning.tuner.TuningErrorBounds(charges, cell, positions)
    return bounds(smearing=1.0)


@case(
    differs="the error bounds evaluate in float64, not in torch's default float32",
    within=1e-6,
)
def grid_search_tuner_errors(torchpme):
    """The errors of the candidates (the timings depend on the clock: only which
    candidates were timed is compared)."""
    positions, charges, cell, indices, distances = with_neighbors(rock_salt(), 3.0)
    bounds = torchpme.tuning.pme.PMEErrorBounds(charges, cell, positions)
    params = [
        {"interpolation_nodes": n, "mesh_spacing": h}
        for n in (3, 4)
        for h in (0.5, 1.0, 2.0)
    ]
    tuner = torchpme.tuning.tuner.GridSearchTuner(
        charges, cell, positions, 3.0, torchpme.PMECalculator, bounds, params,
        indices, distances,
    )  # fmt: skip
    errors, timings = tuner.tune(1e-2)
    return errors, [t != float("inf") for t in timings]
