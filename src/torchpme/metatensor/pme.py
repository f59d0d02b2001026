"""Metatensor binding of :class:`torchpme.calculators.PMECalculator`."""

from .. import calculators
from .calculator import Calculator

__all__ = ["PMECalculator"]


class PMECalculator(Calculator):
    """Particle-mesh Ewald on a metatomic ``System``; the constructor arguments are
    those of :class:`torchpme.calculators.PMECalculator` (``potential``,
    ``mesh_spacing``, ``interpolation_nodes``, ``full_neighbor_list``)."""

    _base_calculator = calculators.PMECalculator
