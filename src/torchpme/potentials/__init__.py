"""Pair potentials and their range separation (short range in real space, long
range in reciprocal space)."""

from .combined import CombinedPotential
from .coulomb import CoulombPotential
from .inversepowerlaw import InversePowerLawPotential
from .potential import Potential
from .potential_dipole import PotentialDipole
from .spline import SplinePotential

__all__ = [
    "CombinedPotential",
    "CoulombPotential",
    "InversePowerLawPotential",
    "Potential",
    "PotentialDipole",
    "SplinePotential",
]
