"""Special functions for the inverse-power-law kernels: Γ, E₁ and Γ(a, z)/zᵃ.

The public home of :mod:`torchpme._core.special`, where the kernels use them.
"""

from .._core.special import exp1, gamma, gammaincc_over_powerlaw

__all__ = ["exp1", "gamma", "gammaincc_over_powerlaw"]
