"""torchpme: differentiable long-range interactions for atomistic ML and simulation.

Building blocks live in :mod:`torchpme.lib`, potentials in
:mod:`torchpme.potentials`, Ewald / PME / P3M calculators in
:mod:`torchpme.calculators` and parameter tuning in :mod:`torchpme.tuning`.
"""

from . import (
    calculators,
    gaussian,
    lib,
    neighbors,
    potentials,
    prefactors,
    probes,
    tuning,
)
from ._core.allocator import keep_freed_memory
from ._core.validation import set_value_checks
from ._version import __version__, __version_tuple__
from .calculators import (
    Calculator,
    CalculatorDipole,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
)
from .potentials import (
    CombinedPotential,
    CoulombPotential,
    InversePowerLawPotential,
    Potential,
    PotentialDipole,
    SplinePotential,
)


def __getattr__(name: str):
    # the optional metatensor bindings load on first use: importing them costs a
    # second and pulls in metatensor; without metatensor installed the attribute
    # is absent, as if its import had been suppressed
    if name == "metatensor":
        import importlib

        try:
            return importlib.import_module(".metatensor", __name__)
        except ImportError as error:
            raise AttributeError(
                "torchpme.metatensor needs metatensor-torch and metatomic-torch "
                f"({error})"
            ) from error
    raise AttributeError(f"module 'torchpme' has no attribute '{name}'")


__all__ = [
    "Calculator",
    "CalculatorDipole",
    "CombinedPotential",
    "CoulombPotential",
    "EwaldCalculator",
    "InversePowerLawPotential",
    "P3MCalculator",
    "PMECalculator",
    "Potential",
    "PotentialDipole",
    "SplinePotential",
    "keep_freed_memory",
    "set_value_checks",
]
