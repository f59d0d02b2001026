"""Building blocks: mesh interpolation, k-space filters, k-vectors, math, splines."""

from . import kspace_filter, kvectors, math, mesh_interpolator, splines
from .kspace_filter import KSpaceFilter, KSpaceKernel, P3MKSpaceFilter
from .kvectors import (
    compute_batched_kvectors,
    generate_kvectors_for_ewald,
    generate_kvectors_for_mesh,
    get_ns_mesh,
)
from .math import exp1, gamma, gammaincc_over_powerlaw
from .mesh_interpolator import MeshInterpolator
from .splines import (
    CubicSpline,
    CubicSplineReciprocal,
    compute_second_derivatives,
    compute_spline_ft,
)

__all__ = [
    "CubicSpline",
    "CubicSplineReciprocal",
    "KSpaceFilter",
    "KSpaceKernel",
    "MeshInterpolator",
    "P3MKSpaceFilter",
    "compute_batched_kvectors",
    "compute_second_derivatives",
    "compute_spline_ft",
    "exp1",
    "gamma",
    "gammaincc_over_powerlaw",
    "generate_kvectors_for_ewald",
    "generate_kvectors_for_mesh",
    "get_ns_mesh",
]
