"""Choosing smearing and reciprocal-space parameters for a target accuracy.

:func:`tune_ewald`, :func:`tune_pme` and :func:`tune_p3m` return the smearing and
the calculator parameters of the fastest setting whose RMS force error is
estimated to stay below ``accuracy`` (definition and method in
:mod:`torchpme.tuning.tuner`); :func:`~torchpme.tuning.tuner.tune_cutoff` also
chooses the real-space cutoff. :func:`estimate_error` rates a complete
parameter set with the same estimates.
"""

from . import estimate, ewald, p3m, pme, tuner
from .estimate import estimate_error
from .ewald import tune_ewald
from .p3m import tune_p3m
from .pme import tune_pme
from .tuner import tune_cutoff

__all__ = ["tune_ewald", "tune_pme", "tune_p3m", "estimate_error"]  # noqa: RUF022 (order of the spec)
