"""Building blocks: mesh interpolation, k-space filters, k-vectors, math, splines."""

from . import kspace_filter, kvectors, mesh_interpolator
from .kspace_filter import KSpaceFilter, KSpaceKernel, P3MKSpaceFilter
from .kvectors import (
    compute_batched_kvectors,
    generate_kvectors_for_ewald,
    generate_kvectors_for_mesh,
    get_ns_mesh,
)
from .mesh_interpolator import MeshInterpolator

__all__ = [
    "KSpaceFilter",
    "KSpaceKernel",
    "MeshInterpolator",
    "P3MKSpaceFilter",
    "compute_batched_kvectors",
    "generate_kvectors_for_ewald",
    "generate_kvectors_for_mesh",
    "get_ns_mesh",
]
