"""Calculators: how the long-range part is computed (direct, Ewald, PME, P3M)."""

from .calculator import Calculator
from .calculator_dipole import CalculatorDipole
from .ewald import EwaldCalculator
from .p3m import P3MCalculator
from .pme import PMECalculator

__all__ = [
    "Calculator",
    "CalculatorDipole",
    "EwaldCalculator",
    "P3MCalculator",
    "PMECalculator",
]
