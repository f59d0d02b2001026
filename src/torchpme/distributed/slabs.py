"""A mesh cut into slabs of planes along the first lattice vector, one per rank.

Slabs first because they need one transpose per transform and no sub-groups:
they serve up to ``n0`` ranks (beyond that, ranks own empty slabs and only
pencils would spread the work further). Each rank:

1. spreads its atoms onto a *buffer* of consecutive planes (its slab plus the
   halo its atoms' stencils reach: wherever its atoms are, so atoms outside
   their domain cost more halo, never a wrong sum);
2. sends every buffer plane to the rank owning it, which sums what arrives
   (:func:`sum_halos`);
3. transforms its slab along the two in-plane axes, exchanges blocks so that it
   holds every plane of a band of rows ``k1`` (:func:`forward_transform`),
   transforms along the first axis and multiplies its band of the filter;
4. runs the inverse (:func:`inverse_transform`), receives its buffer's planes
   back from their owners (:func:`fetch_halos`, the adjoint of step 2) and
   gathers at its atoms.

The spectrum of a slab-decomposed mesh is the single-process one, cut into
bands, so the result equals one process's up to the order of the sums. All
maps are differentiable (the exchanges of :mod:`.collectives` run their adjoint
backwards).
"""

import math
from typing import List, NamedTuple

import torch

from .._core import mesh as core_mesh
from .._core.weights import Scheme, evaluate_weights
from .collectives import exchange_rows

__all__ = [
    "HaloPlan",
    "SlabLayout",
    "band_of",
    "buffer_of",
    "buffer_plan",
    "forward_transform",
    "halo_plan",
    "inverse_transform",
    "plane_arc",
    "slab_layout",
]


def shares(n: int, size: int) -> List[int]:
    """Boundaries ``[b_0 = 0, …, b_size = n]`` of ``n`` items over ``size`` ranks."""
    return [(rank * n) // size for rank in range(size + 1)]


class SlabLayout(NamedTuple):
    """Who owns what: planes along axis 0 of the mesh, rows along axis 1 of the
    spectrum.

    Attributes:
        shape: the global mesh ``[n0, n1, n2]``.
        planes: ``size + 1`` boundaries: rank ``r`` owns planes ``planes[r]`` to
            ``planes[r + 1] - 1``.
        rows: ``size + 1`` boundaries of the spectrum's rows ``k1``.
        rank: this process.
    """

    shape: List[int]
    planes: List[int]
    rows: List[int]
    rank: int


def slab_layout(shape: List[int], rank: int, size: int) -> SlabLayout:
    """The :class:`SlabLayout` of a mesh of ``shape`` over ``size`` ranks."""
    return SlabLayout(list(shape), shares(shape[0], size), shares(shape[1], size), rank)


def plane_arc(planes: torch.Tensor, layout: SlabLayout) -> List[int]:
    """``[start, length]``: the consecutive planes (modulo ``n0``) that hold
    ``planes``, the first-axis stencil nodes of this rank's atoms, each counted
    at its nearest distance from the middle of the rank's own slab (so a slab
    and its halos on both sides stay one arc); one plane when there are no
    atoms."""
    n0 = layout.shape[0]
    middle = (layout.planes[layout.rank] + layout.planes[layout.rank + 1]) // 2
    if planes.numel() == 0:
        return [middle % n0, 1]
    half = n0 // 2
    relative = torch.remainder(planes - middle + half, n0) - half
    low, high = int(relative.min()), int(relative.max())
    return [(middle + low) % n0, high - low + 1]


def buffer_plan(
    placement: core_mesh.Placement,
    scheme: Scheme,
    layout: SlabLayout,
    arc: List[int],
) -> core_mesh.MeshPlan:
    """The :class:`~torchpme._core.mesh.MeshPlan` of this rank's atoms on its
    buffer of ``arc[1]`` planes starting at global plane ``arc[0]``.

    ``placement`` comes from :func:`torchpme._core.mesh.placement` on the global
    mesh; its first-axis shares are moved to buffer planes.
    """
    n0, n1, n2 = layout.shape
    stencil = placement.stencil.clone()
    planes = torch.div(stencil[:, 0], n1 * n2, rounding_mode="floor")
    stencil[:, 0] = torch.remainder(planes - arc[0], n0) * (n1 * n2)
    weights = evaluate_weights(placement.offsets, scheme.coefficients)
    return core_mesh.MeshPlan(
        stencil, weights, placement.order, [arc[1], n1, n2], 0, scheme
    )


class HaloPlan(NamedTuple):
    """Which buffer planes go where, and where received planes land.

    Attributes:
        send_index: buffer planes to send, grouped by owning rank.
        send_counts: planes for each rank.
        receive_index: slab planes (local numbering) of the received planes,
            grouped by sending rank.
        receive_counts: planes from each rank.
        slab: planes this rank owns.
        buffer: planes of this rank's buffer.
        identity: the buffer is the slab, plane for plane (one rank holding
            the whole mesh): no copies.
    """

    send_index: torch.Tensor
    send_counts: List[int]
    receive_index: torch.Tensor
    receive_counts: List[int]
    slab: int
    buffer: int
    identity: bool


def _owned(arc: List[int], layout: SlabLayout, owner: int, device):
    """``(buffer planes, the owner's local planes)`` of ``arc`` owned by ``owner``."""
    n0 = layout.shape[0]
    steps = torch.arange(arc[1], device=device)
    planes = torch.remainder(arc[0] + steps, n0)
    first, end = layout.planes[owner], layout.planes[owner + 1]
    mine = (planes >= first) & (planes < end)
    return steps[mine], planes[mine] - first


def halo_plan(
    arcs: List[List[int]], layout: SlabLayout, device: torch.device
) -> HaloPlan:
    """The :class:`HaloPlan` of this rank, from every rank's buffer ``arcs``."""
    size = len(arcs)
    rank = layout.rank
    sent = [_owned(arcs[rank], layout, owner, device)[0] for owner in range(size)]
    received = [_owned(arcs[source], layout, rank, device)[1] for source in range(size)]
    slab = layout.planes[rank + 1] - layout.planes[rank]
    identity = size == 1 and arcs[0][0] == 0 and arcs[0][1] == slab
    return HaloPlan(
        torch.cat(sent),
        [len(part) for part in sent],
        torch.cat(received),
        [len(part) for part in received],
        slab,
        arcs[rank][1],
        identity,
    )


def sum_halos(buffer: torch.Tensor, halo: HaloPlan, group) -> torch.Tensor:
    """``(C, slab, n1, n2)``: every rank's buffer planes summed into their owners'
    slabs."""
    if halo.identity:
        return buffer
    outgoing = buffer.index_select(1, halo.send_index).transpose(0, 1)
    incoming = exchange_rows(outgoing, halo.send_counts, halo.receive_counts, group)
    slab = incoming.new_zeros((halo.slab,) + tuple(incoming.shape[1:]))
    return slab.index_add(0, halo.receive_index, incoming).transpose(0, 1)


def fetch_halos(slab: torch.Tensor, halo: HaloPlan, group) -> torch.Tensor:
    """``(C, buffer, n1, n2)``: this rank's buffer planes, read from their owners'
    slabs (the adjoint of :func:`sum_halos`)."""
    if halo.identity:
        return slab
    outgoing = slab.index_select(1, halo.receive_index).transpose(0, 1)
    incoming = exchange_rows(outgoing, halo.receive_counts, halo.send_counts, group)
    buffer = incoming.new_zeros((halo.buffer,) + tuple(incoming.shape[1:]))
    return buffer.index_copy(0, halo.send_index, incoming).transpose(0, 1)


def _transform(fn, x: torch.Tensor, shape: List[int], dtype: torch.dtype):
    """``fn(x)``, or for an empty ``x`` (a rank without planes or rows: the FFT
    libraries refuse empty batches) zeros of ``shape`` still joined to ``x``'s
    graph, so that every rank's backward pass runs the same exchanges."""
    if x.numel() > 0:
        return fn(x)
    joined = torch.sum(torch.view_as_real(x) if x.is_complex() else x)
    return torch.zeros(shape, dtype=dtype, device=x.device) + 0.0 * joined


def _joined(parts: List[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat(parts, dim)``, without a copy for one part (one rank)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _widths(bounds: List[int]) -> List[int]:
    return [bounds[r + 1] - bounds[r] for r in range(len(bounds) - 1)]


def _redistribute(
    real: torch.Tensor,
    split: int,
    split_bounds: List[int],
    join: int,
    join_bounds: List[int],
    rank: int,
    group,
) -> torch.Tensor:
    """The transpose between slabs and bands: ``real`` cut along axis ``split``
    at ``split_bounds`` (rank ``r`` gets part ``r``), the parts received
    joined along axis ``join`` (rank ``r``'s part ``join_bounds`` wide)."""
    parts = [
        real.narrow(split, split_bounds[r], width).reshape(-1)
        for r, width in enumerate(_widths(split_bounds))
    ]
    shapes = []
    for width in _widths(join_bounds):
        shape = list(real.shape)
        shape[split] = split_bounds[rank + 1] - split_bounds[rank]
        shape[join] = width
        shapes.append(shape)
    receive = [math.prod(shape) for shape in shapes]
    send = [part.numel() for part in parts]
    incoming = exchange_rows(_joined(parts), send, receive, group)
    blocks = [
        block.reshape(shape)
        for block, shape in zip(torch.split(incoming, receive), shapes)
    ]
    return _joined(blocks, join)


def forward_transform(slab: torch.Tensor, layout: SlabLayout, group) -> torch.Tensor:
    """``(C, n0, rows, n2//2+1)``: the unnormalised real FFT of the whole mesh,
    this rank's band of rows ``k1``, from its real ``(C, slab, n1, n2)`` slab."""
    half = layout.shape[2] // 2 + 1
    complex_dtype = (slab[:1, :1, :1, :1] * 1j).dtype
    planes = _transform(
        lambda x: torch.fft.rfft2(x, dim=(-2, -1)),
        slab,
        [slab.shape[0], slab.shape[1], layout.shape[1], half],
        complex_dtype,
    )
    real = _redistribute(
        torch.view_as_real(planes), 2, layout.rows, 1, layout.planes, layout.rank, group
    )
    spectrum = torch.view_as_complex(real.contiguous())
    return _transform(
        lambda x: torch.fft.fft(x, dim=1), spectrum, list(spectrum.shape), complex_dtype
    )


def inverse_transform(band: torch.Tensor, layout: SlabLayout, group) -> torch.Tensor:
    """``(C, slab, n1, n2)``: the unnormalised inverse of :func:`forward_transform`
    (``ifft_norm="forward"``), from this rank's ``(C, n0, rows, n2//2+1)`` band."""
    n1, n2 = layout.shape[1], layout.shape[2]
    inverse = _transform(
        lambda x: torch.fft.ifft(x, dim=1, norm="forward"),
        band,
        list(band.shape),
        band.dtype,
    )
    real = _redistribute(
        torch.view_as_real(inverse),
        1,
        layout.planes,
        2,
        layout.rows,
        layout.rank,
        group,
    )
    spectrum = torch.view_as_complex(real.contiguous())
    slab = layout.planes[layout.rank + 1] - layout.planes[layout.rank]
    return _transform(
        lambda x: torch.fft.irfft2(x, s=(n1, n2), dim=(-2, -1), norm="forward"),
        spectrum,
        [band.shape[0], slab, n1, n2],
        real.dtype,
    )


def band_of(buffer: torch.Tensor, layout: SlabLayout, halo: HaloPlan, group):
    """``(C, n0, rows, n2//2+1)``: this rank's band of the spectrum of the whole
    mesh, from its ``(C, planes, n1, n2)`` buffer (halos summed, transformed)."""
    return forward_transform(sum_halos(buffer, halo, group), layout, group)


def buffer_of(band: torch.Tensor, layout: SlabLayout, halo: HaloPlan, group):
    """``(C, planes, n1, n2)``: the inverse of :func:`band_of` read back on this
    rank's buffer (halos fetched from their owners)."""
    return fetch_halos(inverse_transform(band, layout, group), halo, group)
