"""torchpme: differentiable long-range interactions for atomistic ML and simulation.

Building blocks live in :mod:`torchpme.lib`, potentials in
:mod:`torchpme.potentials`, Ewald / PME / P3M calculators in
:mod:`torchpme.calculators` and parameter tuning in :mod:`torchpme.tuning`.
"""

import contextlib

from . import calculators, lib, potentials, prefactors
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

with contextlib.suppress(ImportError):
    from . import tuning

with contextlib.suppress(ImportError):
    # optional: needs metatensor-torch and metatomic-torch
    from . import metatensor

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
    "set_value_checks",
]
