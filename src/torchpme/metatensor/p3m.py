"""Metatensor binding of :class:`torchpme.calculators.P3MCalculator`."""

from .. import calculators
from .calculator import Calculator

__all__ = ["P3MCalculator"]


class P3MCalculator(Calculator):
    """P3M on a metatomic ``System``; the constructor arguments are those of
    :class:`torchpme.calculators.P3MCalculator` (``potential``, ``mesh_spacing``,
    ``interpolation_nodes``, ``full_neighbor_list``)."""

    _base_calculator = calculators.P3MCalculator
