"""Tuning of systems with open directions (clusters, wires, slabs).

PME and P3M compute them on meshes doubled across the open directions with
nodes ``mesh_spacing / 2`` apart, as a periodic cell's mesh is; their errors
are those of a periodic cell that holds the atoms with as much vacuum along
each open direction as the doubled mesh has. The estimates rate that cell
(:func:`proxy_cell`), whose vacuum :mod:`torchpme.tuning._density` detects; the
timings run the calculator on the system as it is, with ``periodic``.

One error term is the open meshes' own: the kernel is sampled at the nodes
along the open directions (spacing ``s = h/2``), so its spectrum has aliases
at ``2π/s``, which the bulk kernel does not. :class:`OpenMeshEstimate` adds
their force error, ``⟨q²⟩ (8/s²) exp(−π²σ²/2s²)`` (the Gaussian-screened
``4π/k²`` at the Nyquist frequency ``π/s``, differentiated once), in
quadrature; it matters only on meshes coarser than about ``σ`` and keeps P3M,
whose influence function amplifies those aliases, within the requested
accuracy there.
"""

import math
from typing import Any, Dict, List, Optional, Tuple

import torch

from .._core.open_mesh import check_periodic_rows, open_axes, open_directions
from .._core.validation import count_periodic, message
from ..calculators import PMECalculator
from ._base import TuningErrorBounds

__all__ = ["OpenMeshEstimate", "check_open_method", "proxy_cell"]


def proxy_cell(
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: Optional[torch.Tensor],
    cutoff: float,
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """``(cell, options)``: the periodic cell the estimates rate and the extra
    keyword arguments of the calculator (``slab_method="exact"`` for a slab).

    Along each open direction ``e`` the cell's row becomes ``e · (2 w + r_c)``,
    with ``w`` the atoms' extent along ``e``: twice the occupied width, as the
    doubled mesh, and at least the cutoff. Periodic rows are kept. Without
    ``periodic`` (or all ``True``) the cell is returned as it is.

    Args:
        cell: ``(3, 3)`` cell (open rows ignored; zeros allowed for a cluster).
        positions: ``(N, 3)`` positions.
        periodic: ``(3,)`` bools, or None.
        cutoff: the real-space cutoff.
    """
    count = count_periodic(periodic)
    if count == 3:
        return cell, {}
    if count == 0:
        axes: List[int] = [0, 1, 2]
        directions = list(torch.eye(3, dtype=cell.dtype, device=cell.device))
    else:
        axes = open_axes(periodic)
        check_periodic_rows(cell, axes)
        directions = open_directions(cell, axes)
    rows = [cell[0], cell[1], cell[2]]
    for axis, direction in zip(axes, directions):
        heights = positions.detach() @ direction
        width = float(heights.max() - heights.min())
        rows[axis] = direction * (2.0 * width + cutoff)
    options: Dict[str, Any] = {"slab_method": "exact"} if count == 2 else {}
    return torch.stack(rows).detach(), options


def check_open_method(calculator: type, periodic: Optional[torch.Tensor]) -> None:
    """Open directions need a mesh method (PME or P3M)."""
    if count_periodic(periodic) < 3 and not issubclass(calculator, PMECalculator):
        raise ValueError(
            message(
                "periodic",
                "three periodic directions for this method (PME and P3M tune "
                "clusters, wires and slabs)",
                f"{periodic.tolist() if periodic is not None else None}",
            )
        )


class OpenMeshEstimate(TuningErrorBounds):
    """The estimate ``inner`` of the proxy cell with the aliasing term of the
    kernel sampled along the open directions (see the module), in quadrature.

    Args:
        inner: the mesh estimate built on :func:`proxy_cell`.
        charges: ``(N, C)`` charges.
    """

    def __init__(self, inner: TuningErrorBounds, charges: torch.Tensor):
        super().__init__(inner._charges, inner._cell, inner._positions)
        self.inner = inner
        self.mean_square = float(torch.mean(charges.detach() ** 2))

    def error(self, *args, **kwargs) -> torch.Tensor:
        """``√(inner² + ΔF_alias²)``, with the arguments of ``inner``."""
        bulk = self.inner(*args, **kwargs)
        spacing = 0.5 * float(kwargs["mesh_spacing"])
        smearing = float(kwargs["smearing"])
        exponent = -((math.pi * smearing / spacing) ** 2) / 2.0
        alias = self.mean_square * 8.0 / spacing**2 * math.exp(exponent)
        return torch.sqrt(bulk**2 + alias**2)
