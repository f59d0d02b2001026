"""torchpme: differentiable long-range interactions for atomistic ML and simulation.

Building blocks live in :mod:`torchpme.lib`, potentials in
:mod:`torchpme.potentials`, Ewald / PME / P3M calculators in
:mod:`torchpme.calculators` and parameter tuning in :mod:`torchpme.tuning`.
"""

from . import lib
from ._core.validation import set_value_checks
from ._version import __version__, __version_tuple__

__all__ = ["__version__", "__version_tuple__", "lib", "set_value_checks"]
