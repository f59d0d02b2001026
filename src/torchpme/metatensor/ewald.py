"""Metatensor binding of :class:`torchpme.calculators.EwaldCalculator`."""

from .. import calculators
from .calculator import Calculator

__all__ = ["EwaldCalculator"]


class EwaldCalculator(Calculator):
    """Ewald summation on a metatomic ``System``; the constructor arguments are those
    of :class:`torchpme.calculators.EwaldCalculator` (``potential``,
    ``lr_wavelength``, ``full_neighbor_list``)."""

    _base_calculator = calculators.EwaldCalculator
