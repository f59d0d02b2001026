"""Clusters (no periodic direction) on the mesh: a free-space convolution.

Hockney & Eastwood's doubled mesh. The atoms' bounding box, widened by the
stencil's reach, holds ``m_d`` nodes of spacing ``s`` along each Cartesian axis;
the mesh is extended to ``n_d ≥ 2 m_d`` nodes and the long-range potential is
sampled at the node displacements of that mesh, wrapped to ``[−n_d/2, n_d/2)``:

.. math::

    K(d) = v_{lr}(‖d ⊙ s‖), \\qquad K(0) = \\lim_{r→0} v_{lr}(r).

Charges occupy the first ``m_d`` nodes only, so every pair of occupied nodes is
``|d_d| < m_d ≤ n_d/2`` apart and the circular convolution with ``K`` on the
extended mesh equals the free-space one on the atoms' mesh: no periodic images,
no neutralising background, any net charge. The filter of the mesh pipeline is
the discrete transform ``G = DFT[K] / (n_0 n_1 n_2)`` (the pipeline transforms
without normalisation), real because ``K`` is even.

``v_lr`` is smooth (range separation), so sampling it costs the same accuracy as
the truncation of ``G(k)`` at the mesh's Nyquist frequency in a periodic cell:
the error terms are those of PME (interpolation of order ``n``, aliasing of
``G`` beyond ``π/s``). The box snaps to multiples of ``s``, so it is fixed
while atoms move by less than a node: energies are differentiable in the
positions between such steps, and translation changes them only at the level of
the interpolation error.

Reference: Hockney & Eastwood, Computer Simulation Using Particles (1988),
§6-5-4, doi:10.1201/9780367806934; Eastwood & Brownrigg, J. Comput. Phys. 32,
24 (1979), doi:10.1016/0021-9991(79)90139-6.
"""

import math
from typing import List, NamedTuple, Optional

import torch

from . import workload
from .execution import transformed
from .fft import even_transform, mirrored_octant

__all__ = [
    "ClusterMesh",
    "box_distances",
    "box_filter",
    "boxed_sizes",
    "cluster_filter",
    "cluster_mesh",
    "is_cluster",
    "octant_distances",
    "smooth_size",
    "taper_window",
    "wrapped_displacements",
]


def is_cluster(periodic: Optional[torch.Tensor]) -> bool:
    """Whether ``periodic`` (``(3,)`` bools or None) has no periodic direction;
    read on the host, so False where nothing may be read (under a ``torch.func``
    transform, see :func:`torchpme._core.validation.count_periodic`)."""
    if periodic is None:
        return False
    if not torch.jit.is_scripting():
        if transformed(periodic):
            return False
    return not bool(periodic.any())


def smooth_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c ≥ n``: sizes the FFT libraries transform fast."""
    best = 1
    while best < n:
        best *= 2
    power3 = 1
    while power3 < 2 * n:
        power5 = power3
        while power5 < 2 * n:
            candidate = power5
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power5 *= 5
        power3 *= 3
    return best


class ClusterMesh(NamedTuple):
    """The extended mesh of a cluster.

    Attributes:
        origin: ``(3,)`` Cartesian corner of the mesh.
        ns: nodes of the extended mesh per Cartesian axis.
        occupied: nodes that atoms' stencils reach per axis (from the corner).
    """

    origin: torch.Tensor
    ns: List[int]
    occupied: List[int]


def cluster_mesh(
    positions: torch.Tensor, spacing: float, reach: int, taper: float
) -> ClusterMesh:
    """The extended mesh of atoms at ``positions`` (read on the host).

    Args:
        positions: ``(N, 3)`` Cartesian positions.
        spacing: node spacing ``s``.
        reach: nodes a stencil reaches beyond an atom's node, on either side.
        taper: length over which the sampled kernel goes to zero beyond the
            occupied displacements (0: no taper; see :func:`cluster_filter`).
    """
    low = torch.floor(positions.detach().min(dim=0).values / spacing) - reach
    high = torch.ceil(positions.detach().max(dim=0).values / spacing) + reach
    occupied: List[int] = (high - low + 1).to(torch.int64).tolist()
    extra = 2 * math.ceil(taper / spacing)
    if not torch.jit.is_scripting():
        _check_box([m + extra // 2 for m in occupied], spacing)
    ns = [smooth_size(2 * m + extra) for m in occupied]
    return ClusterMesh(low * spacing, ns, occupied)


@torch.jit.unused
def _check_box(occupied: List[int], spacing: float) -> None:
    extent = ", ".join(f"{(m - 1) * spacing:.4g}" for m in occupied)
    workload.check_mesh(
        [2.0 * m for m in occupied],
        "mesh_spacing",
        f"{2.0 * spacing:g} for a cluster of extent {extent}",
    )


def wrapped_displacements(n: int, spacing: float, like: torch.Tensor) -> torch.Tensor:
    """Node displacements ``d s`` of an ``n``-node axis, ``d`` in ``[−n/2, n/2)``."""
    steps = torch.arange(n, dtype=like.dtype, device=like.device)
    return torch.where(steps < (n + 1) // 2, steps, steps - n) * spacing


def octant_distances(ns: List[int], spacing: float, like: torch.Tensor):
    """``‖d ⊙ s‖`` for the node displacements ``0 ≤ d_a ≤ n_a/2`` of the
    extended mesh, ``(n0//2+1, n1//2+1, n2//2+1)``, in the dtype and on the
    device of ``like``: every wrapped displacement has the length of one of
    them (the kernel is even along each axis)."""
    axes = [
        (torch.arange(n // 2 + 1, dtype=like.dtype, device=like.device) * spacing) ** 2
        for n in ns
    ]
    squared = (
        axes[0].reshape(-1, 1, 1)
        + axes[1].reshape(1, -1, 1)
        + axes[2].reshape(1, 1, -1)
    )
    return torch.sqrt(squared)


def taper_window(n: int, occupied: int, like: torch.Tensor) -> torch.Tensor:
    """1 for displacements ``|d| < occupied``, then a Planck taper to 0 at
    ``n/2`` (smooth to every order, so the window adds no high frequencies)."""
    steps = torch.arange(n, dtype=torch.float64, device=like.device)
    distance = torch.where(steps < (n + 1) // 2, steps, steps - n).abs()
    width = n // 2 - occupied
    if width < 1:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    x = ((distance - occupied) / width).clamp(1e-6, 1.0 - 1e-6)
    taper = torch.sigmoid(1.0 / x - 1.0 / (1.0 - x))
    window = torch.where(distance < occupied, torch.ones_like(x), taper)
    return torch.where(distance >= n // 2, torch.zeros_like(x), window).to(like.dtype)


def _windowed(
    ns: List[int], occupied: List[int], distances: torch.Tensor, sampled, limit
) -> torch.Tensor:
    """``w K`` on the displacements of ``distances`` (the whole mesh ``ns``, or
    its octant ``0 ≤ d ≤ n/2``): ``K = v_lr`` with its limit at ``d = 0``,
    times the window of each axis."""
    kernel = torch.where(distances == 0.0, limit.to(sampled.dtype), sampled)
    shapes = ([-1, 1, 1], [1, -1, 1], [1, 1, -1])
    for axis in range(3):
        window = taper_window(ns[axis], occupied[axis], kernel)
        kernel = kernel * window[: kernel.shape[axis]].reshape(shapes[axis])
    return kernel


def cluster_filter(
    mesh: ClusterMesh,
    distances: torch.Tensor,
    sampled: torch.Tensor,
    limit,
    influence: torch.Tensor,
) -> torch.Tensor:
    """The filter ``U G`` with ``G = DFT[w K] / n`` of the extended mesh and the
    influence function ``U`` of the assignment, ``(n0, n1, n2//2+1)``.

    Displacements between occupied nodes are shorter than ``occupied`` along
    each axis, where the window ``w`` is 1, so the taper changes no result of
    the convolution. It makes ``w K`` smooth where the mesh wraps around: the
    transform of the bare truncated kernel carries high frequencies from that
    jump, which an influence function that deconvolves the assignment (P3M)
    would amplify. ``w K``, ``G`` and ``U`` are even along each axis, so all of
    it is formed on one octant and mirrored onto the mesh at the end.

    Args:
        mesh: from :func:`cluster_mesh`.
        distances: from :func:`octant_distances`.
        sampled: ``v_lr`` at those distances, same shape (a potential's
            ``lr_from_dist``).
        limit: ``lim_{r→0} v_lr(r)`` (its ``self_contribution``), 0-dim.
        influence: ``U`` on the mesh's half spectrum ``(n0, n1, n2//2+1)``, or
            0-dim.
    """
    count = mesh.ns[0] * mesh.ns[1] * mesh.ns[2]
    kernel = _windowed(mesh.ns, mesh.occupied, distances, sampled, limit) / count
    sizes = (mesh.ns[0], mesh.ns[1], mesh.ns[2])
    spectrum = even_transform(kernel, sizes)
    if influence.dim() == 3:
        influence = influence[: spectrum.shape[0], : spectrum.shape[1]]
    return mirrored_octant(spectrum * influence, sizes)


def boxed_sizes(ns: List[int], reach: int, taper: List[int]) -> List[int]:
    """Nodes of the extended mesh of a cluster in a fixed box of ``ns`` nodes
    per lattice vector: its stencils reach ``n + 2·reach`` nodes, doubled, plus
    ``taper`` nodes on each side (no tensor read: the sizes of a fixed mesh)."""
    return [smooth_size(2 * (n + 2 * reach + t)) for n, t in zip(ns, taper)]


def box_distances(cell: torch.Tensor, ns: List[int], sizes: List[int]):
    """``‖Σ_a d_a h_a‖`` for every wrapped node displacement ``d`` of the
    extended mesh ``sizes`` of a box ``cell`` with ``ns`` nodes per lattice
    vector (``h_a = a_a / n_a``), ``(N0, N1, N2)``; differentiable in ``cell``."""
    steps = [wrapped_displacements(m, 1.0, cell) for m in sizes]
    vectors = (
        steps[0].reshape(-1, 1, 1, 1) * (cell[0] / ns[0])
        + steps[1].reshape(1, -1, 1, 1) * (cell[1] / ns[1])
        + steps[2].reshape(1, 1, -1, 1) * (cell[2] / ns[2])
    )
    squared = torch.sum(vectors * vectors, dim=-1)
    # the norm at d = 0 has no second derivative: taken on a safe value there
    zero = squared == 0.0
    return torch.where(zero, 0.0, torch.sqrt(torch.where(zero, 1.0, squared)))


def box_filter(
    occupied: List[int],
    distances: torch.Tensor,
    sampled: torch.Tensor,
    limit,
    influence: torch.Tensor,
) -> torch.Tensor:
    """``U G`` of :func:`cluster_filter` for the extended mesh of a fixed box
    (``distances`` from :func:`box_distances`, ``occupied`` the nodes its
    stencils reach per axis): the same window and transform, on the whole
    mesh (a skewed box's kernel is even only as a whole, ``K(d) = K(−d)``)."""
    sizes = [distances.shape[0], distances.shape[1], distances.shape[2]]
    kernel = _windowed(sizes, occupied, distances, sampled, limit)
    count = sizes[0] * sizes[1] * sizes[2]
    # w K is even, so its transform is real up to rounding
    return torch.fft.rfftn(kernel).real * (influence / float(count))
