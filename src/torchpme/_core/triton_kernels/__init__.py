"""Fused Triton kernels for the hottest loops on a GPU: spread, gather, distances.

The stencil kernels are in :mod:`.mesh_kernels`, the pair kernels in
:mod:`.pair_kernels`, their launch in :mod:`.launch`.

On a GPU the PyTorch forms of these loops are bound by memory traffic: spreading
builds the ``(n³, N)`` flat indices and weight products before its scatter-add
(two 450 MB tensors for PME at N = 262144, n = 6), and the pair distances write and
re-read a ``(P, 3)`` vector buffer (590 MB for 24 M pairs) through a matrix product
whose inner size is 3. Each kernel here keeps those intermediates in registers:

- :func:`scatter`: ``mesh[c, t] += q_ic wx_ia wy_ib wz_ic'`` with atomic additions,
  one program per block of atoms, the ``n`` nodes along z (contiguous in the mesh)
  as the inner vector;
- :func:`gather_with_weight_gradients`: the adjoint gather and, optionally, the
  gradients of the gathered value with respect to the 1-D weights;
- :func:`pair_distances` / :func:`pair_distances_backward`: ``‖r_j − r_i + S A‖``
  and the accumulation of ``∂E/∂r_ij · d_ij / r_ij`` at both atoms (and ``Sᵀ`` of
  it, the cell gradient), recomputing the pair vectors instead of storing them;
- :func:`coulomb_pair_sum` / :func:`coulomb_pair_sum_backward`: the short-range
  Coulomb sum ``½ Σ_j q_j A erfc(r/√2σ)/r`` with atomic additions at both atoms,
  keeping ``v`` and ``v'`` per pair for the backward (see
  :mod:`torchpme._core.shortrange`).

They compute the same values as the PyTorch functions of
:mod:`torchpme._core.stencil` and :mod:`torchpme._core.distances`, to rounding
(atomic additions sum in any order). Which calls use them is decided in
:mod:`torchpme._core.execution`. This module imports Triton; with ``TRITON_INTERPRET=1``
set before the import its kernels also run on CPU tensors (the tests do that).
"""

from .mesh_kernels import gather_with_weight_gradients, scatter
from .pair_kernels import (
    coulomb_pair_sum,
    coulomb_pair_sum_backward,
    pair_distances,
    pair_distances_backward,
)

__all__ = [
    "coulomb_pair_sum",
    "coulomb_pair_sum_backward",
    "gather_with_weight_gradients",
    "pair_distances",
    "pair_distances_backward",
    "scatter",
]
