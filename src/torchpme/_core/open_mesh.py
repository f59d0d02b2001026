"""Meshes of systems periodic along one or two lattice vectors (wires, slabs).

The periodic lattice vectors stay rows of the mesh cell; each open axis becomes
a unit vector ``e`` orthogonal to them (a slab: the plane's normal; a wire: two
orthonormal directions across its axis) times the mesh's extent ``n s``. The
atoms' coordinates ``r · e``, widened by the stencil's reach, occupy ``m``
nodes of spacing ``s`` along ``e``, and the mesh has ``n ≥ 2m`` (plus a margin)
of them, so that the circular convolution along ``e`` is the free one
(Hockney & Eastwood's doubling, along the open axes only).

The filter is a kernel ``F`` in a mixed representation (a Fourier series along
the periodic axes, a function of the displacement along the open ones, see
:mod:`torchpme._core.slab` and :mod:`torchpme._core.wire`), sampled at the
wrapped node displacements and transformed along the open axes:
``G = DFT_open[w F] / Π n_open`` with the window ``w`` of
:func:`torchpme._core.freespace.taper_window` (1 between occupied nodes; it
tapers over the margin, which P3M's influence function needs, as for clusters).
The box snaps to multiples of ``s``: energies are differentiable between such
steps, and the cell's open rows change nothing.
"""

import math
from typing import List, NamedTuple, Optional

import torch

from . import workload
from .execution import transformed
from .fft import mirror_index
from .freespace import smooth_size, taper_window, wrapped_displacements
from .kspace import fft_frequencies, reciprocal_cell
from .validation import message

__all__ = [
    "OpenMesh",
    "along",
    "boxed_mesh",
    "check_periodic_rows",
    "half_displacements",
    "in_mesh_order",
    "open_axes",
    "open_directions",
    "open_displacements",
    "open_filter",
    "open_mesh",
    "periodic_wavenumbers",
]


def open_axes(periodic: Optional[torch.Tensor]) -> List[int]:
    """The non-periodic axes of a wire or a slab (one or two ``False``), else
    ``[]``; read on the host (``[]`` under a ``torch.func`` transform, as
    :func:`torchpme._core.freespace.is_cluster`)."""
    if periodic is None:
        return []
    if not torch.jit.is_scripting():
        if transformed(periodic):
            return []
    flags: List[bool] = periodic.tolist()
    axes: List[int] = []
    for d in range(3):
        if not flags[d]:
            axes.append(d)
    if len(axes) == 3:
        return []
    return axes


def check_periodic_rows(cell: torch.Tensor, axes: List[int]) -> None:
    """Refuse periodic rows of ``cell`` that span no line (a wire) or no plane
    (a slab); read on the host."""
    if len(axes) == 1:
        first, second = (axes[0] + 1) % 3, (axes[0] + 2) % 3
        size = torch.linalg.norm(torch.linalg.cross(cell[first], cell[second]))
        expected = "two independent periodic lattice vectors (a slab's plane)"
        received = f"lattice vectors {first} and {second} of zero cross product"
    else:
        periodic = 3 - axes[0] - axes[1]
        size = torch.linalg.norm(cell[periodic])
        expected = "a non-zero periodic lattice vector (a wire's axis)"
        received = f"lattice vector {periodic} of zero length"
    if not float(size.detach()) > 0.0:
        raise ValueError(message("cell", expected, received))


class OpenMesh(NamedTuple):
    """The mesh of a wire or a slab.

    Attributes:
        cell: ``(3, 3)`` mesh cell: the periodic rows of the cell, and ``n s e``
            in the rows of the open axes.
        origin: ``(3,)`` the mesh's corner along the open directions.
        ns: nodes per axis.
        axes: the open axes.
        occupied: nodes that atoms' stencils reach along each axis (0 for a
            periodic one).
        spacings: ``(len(axes),)`` node spacing along each open direction.
    """

    cell: torch.Tensor
    origin: torch.Tensor
    ns: List[int]
    axes: List[int]
    occupied: List[int]
    spacings: torch.Tensor


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / torch.linalg.norm(vector)


def open_directions(cell: torch.Tensor, axes: List[int]) -> List[torch.Tensor]:
    """Orthonormal directions of the open axes, orthogonal to the periodic
    rows of ``cell``."""
    if len(axes) == 1:
        axis = axes[0]
        return [_unit(torch.linalg.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3]))]
    periodic = 3 - axes[0] - axes[1]
    along_axis = _unit(cell[periodic])
    # the Cartesian direction least aligned with the axis: a well-conditioned
    # cross product (chosen on the host; the directions stay differentiable)
    reference = torch.zeros_like(along_axis)
    reference[int(torch.argmin(along_axis.detach().abs()))] = 1.0
    first = _unit(torch.linalg.cross(along_axis, reference))
    return [first, torch.linalg.cross(along_axis, first)]


def open_mesh(
    positions: torch.Tensor,
    cell: torch.Tensor,
    axes: List[int],
    ns: List[int],
    spacing: float,
    reach: int,
    margin: float,
) -> OpenMesh:
    """The mesh of atoms at ``positions``, periodic along the rows of ``cell``
    not in ``axes`` (the atoms' extent is read on the host).

    Args:
        positions: ``(N, 3)`` Cartesian positions.
        cell: ``(3, 3)`` cell; its rows in ``axes`` are ignored.
        axes: the open axes (one: a slab, two: a wire).
        ns: nodes along the periodic axes (the entries of ``axes`` are ignored).
        spacing: node spacing ``s`` along the open directions.
        reach: nodes a stencil reaches beyond an atom's node, on either side.
        margin: length past the occupied displacements before the mesh wraps,
            over which the window tapers.
    """
    directions = open_directions(cell, axes)
    rows = [cell[0], cell[1], cell[2]]
    sizes = list(ns)
    occupied = [0, 0, 0]
    origin = torch.zeros_like(cell[0])
    extra = 2 * math.ceil(margin / spacing)
    for axis, direction in zip(axes, directions):
        coordinates = positions.detach() @ direction.detach()
        low = math.floor(float(coordinates.min()) / spacing) - reach
        high = math.ceil(float(coordinates.max()) / spacing) + reach
        occupied[axis] = high - low + 1
        sizes[axis] = smooth_size(2 * occupied[axis] + extra)
        rows[axis] = direction * (sizes[axis] * spacing)
        origin = origin + direction * (low * spacing)
    if not torch.jit.is_scripting():
        _check_size(sizes, spacing)
    steps = torch.full((len(axes),), spacing, dtype=cell.dtype, device=cell.device)
    return OpenMesh(torch.stack(rows), origin, sizes, axes, occupied, steps)


def boxed_mesh(
    cell: torch.Tensor, axes: List[int], ns: List[int], reach: int, taper: int
) -> OpenMesh:
    """The mesh of a slab or a wire in the box ``cell`` (its atoms' fractional
    coordinates along the open lattice vectors ``axes`` in ``[0, 1)``) with
    ``ns`` nodes per lattice vector: ``n`` nodes over the box's extent along
    each open direction (a slab: its height along the normal; a wire: the
    rectangle that bounds its cross-section), doubled with the stencils' reach
    and ``taper`` nodes. The shape is fixed before the call and nothing is read
    on the host."""
    if len(axes) == 1:
        (normal,) = open_directions(cell, axes)
        signed = cell[axes[0]] @ normal
        directions = [normal * torch.sign(signed)]
        low = torch.zeros_like(signed).reshape(1)
        extents = torch.abs(signed).reshape(1)
    else:
        # across the axis from the first open row, which the box's volume
        # keeps off the axis: a fixed rule, no choice read on the host
        along_axis = _unit(cell[3 - axes[0] - axes[1]])
        rows = [cell[a] - (cell[a] @ along_axis) * along_axis for a in axes]
        first = _unit(rows[0])
        directions = [first, torch.linalg.cross(along_axis, first)]
        corners = (
            torch.stack([torch.zeros_like(first), rows[0], rows[1], rows[0] + rows[1]])
            @ torch.stack(directions).T
        )
        low = corners.min(dim=0).values
        extents = corners.max(dim=0).values - low
    counts = [float(ns[a]) for a in axes]
    spacings = extents / torch.tensor(counts, dtype=cell.dtype, device=cell.device)
    rows = [cell[0], cell[1], cell[2]]
    sizes = list(ns)
    occupied = [0, 0, 0]
    origin = torch.zeros_like(cell[0])
    for j, axis in enumerate(axes):
        occupied[axis] = ns[axis] + 2 * reach
        sizes[axis] = smooth_size(2 * (occupied[axis] + taper))
        rows[axis] = directions[j] * (spacings[j] * sizes[axis])
        origin = origin + directions[j] * low[j]
    return OpenMesh(torch.stack(rows), origin, sizes, axes, occupied, spacings)


@torch.jit.unused
def _check_size(ns: List[int], spacing: float) -> None:
    workload.check_mesh(
        [float(n) for n in ns], "mesh_spacing", f"{2.0 * spacing:g} for a slab or wire"
    )


def along(values: torch.Tensor, axis: int) -> torch.Tensor:
    """A 1-D tensor shaped to broadcast along ``axis`` of a 3-D mesh."""
    shape = [1, 1, 1]
    shape[axis] = -1
    return values.reshape(shape)


def periodic_wavenumbers(mesh: OpenMesh) -> torch.Tensor:
    """``|k|`` of the mesh's wave vectors along its periodic axes, broadcast to
    ``(n0, n1, n2//2+1)`` where axis 2 is periodic (size 1 along open axes)."""
    cell = mesh.cell
    reciprocal = reciprocal_cell(cell)
    k_vectors = torch.zeros((1, 1, 1, 3), dtype=cell.dtype, device=cell.device)
    for d in range(3):
        if d not in mesh.axes:
            m = fft_frequencies(mesh.ns[d], d == 2, cell.dtype, cell.device)
            k_vectors = k_vectors + along(m, d).unsqueeze(-1) * reciprocal[d]
    k_sq = torch.sum(k_vectors * k_vectors, dim=-1)
    # the norm at k = 0 has no second derivative: take it on a safe value there
    flat = k_sq == 0.0
    return torch.where(flat, 0.0, torch.sqrt(torch.where(flat, 1.0, k_sq)))


def half_displacements(mesh: OpenMesh) -> List[torch.Tensor]:
    """The node distances ``0, s, …, ⌊n/2⌋ s`` along each open axis (1-D): a
    kernel even along the open axes is sampled on them, and
    :func:`in_mesh_order` mirrors it onto the wrapped displacements."""
    cell = mesh.cell
    return [
        torch.arange(mesh.ns[a] // 2 + 1, dtype=cell.dtype, device=cell.device)
        * mesh.spacings[j]
        for j, a in enumerate(mesh.axes)
    ]


def in_mesh_order(
    mesh: OpenMesh, k: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """``values`` sampled at the flattened wavenumbers ``k`` of
    :func:`periodic_wavenumbers` and the :func:`half_displacements`, laid out
    as ``(K, open axes...)``: mirrored onto the mesh's wrapped displacements
    and permuted into its axis order."""
    order: List[int] = []
    sizes: List[int] = []
    for d in range(3):
        if d not in mesh.axes:
            order.append(d)
            sizes.append(k.shape[d])
    for a in mesh.axes:
        order.append(a)
        sizes.append(mesh.ns[a] // 2 + 1)
    inverse = [order.index(0), order.index(1), order.index(2)]
    values = values.reshape(sizes).permute(inverse)
    for a in mesh.axes:
        values = values.index_select(a, mirror_index(mesh.ns[a], values.device))
    return values


def open_displacements(mesh: OpenMesh) -> List[torch.Tensor]:
    """The wrapped node displacements ``d s`` along each open axis, each shaped
    to broadcast along its axis."""
    return [
        along(wrapped_displacements(mesh.ns[a], 1.0, mesh.cell) * mesh.spacings[j], a)
        for j, a in enumerate(mesh.axes)
    ]


def open_filter(mesh: OpenMesh, sampled: torch.Tensor) -> torch.Tensor:
    """``G = DFT_open[w F] / Π n_open`` on the half spectrum
    ``(n0, n1, n2//2+1)``, from ``F`` sampled on the periodic axes' spectrum
    and the open axes' displacements (even along each open axis)."""
    count = 1
    for a in mesh.axes:
        sampled = sampled * along(
            taper_window(mesh.ns[a], mesh.occupied[a], sampled), a
        )
        count *= mesh.ns[a]
    for a in mesh.axes:
        # even along a, so each transform is real up to rounding
        if a == 2:
            sampled = torch.fft.rfft(sampled, dim=2).real
        else:
            sampled = torch.fft.fft(sampled, dim=a).real
    return sampled / float(count)
