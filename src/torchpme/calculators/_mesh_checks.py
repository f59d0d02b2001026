"""Checks of the mesh calculators' arguments that depend on the boundary
conditions (one place for PME and P3M, single systems and batches)."""

from typing import List, Optional

import torch

from .._core.validation import message
from ..potentials import CoulombPotential, InversePowerLawPotential, Potential

__all__ = [
    "SLAB_METHODS",
    "check_inside",
    "check_mesh_inputs",
    "check_slab_method",
    "check_taper_spacing",
    "open_exponent",
]

SLAB_METHODS = ("yeh-berkowitz", "exact")


def open_exponent(potential: Potential) -> float:
    """``p`` of a potential ``1/r^p`` split by a Gaussian (1 for
    :class:`CoulombPotential`): the potentials the kernels of wires and exact
    slabs are written for; 0 for any other."""
    if isinstance(potential, CoulombPotential):
        return 1.0
    if isinstance(potential, InversePowerLawPotential):
        return float(potential._p)
    return 0.0


def check_slab_method(slab_method: str, potential: Potential) -> str:
    """``slab_method`` is one of :data:`SLAB_METHODS`; ``"exact"`` needs ``1/r``
    or ``1/r^p`` with ``p > 2`` (the 2-D sum of ``1/r²`` diverges as the
    logarithm of the slab's extent)."""
    if slab_method not in SLAB_METHODS:
        raise ValueError(
            message("slab_method", "'yeh-berkowitz' or 'exact'", f"'{slab_method}'")
        )
    exponent = open_exponent(potential)
    if slab_method == "exact" and not (exponent == 1.0 or exponent > 2.0):
        received = f"'exact' with {type(potential).__name__}"
        if exponent == 2.0:
            received += " of exponent 2"
        raise ValueError(
            message(
                "slab_method",
                "'yeh-berkowitz' for a potential other than CoulombPotential "
                "and InversePowerLawPotential of exponent 3 to 6",
                received,
            )
        )
    return slab_method


def check_inside(cell: torch.Tensor, positions: torch.Tensor, axes: List[int]) -> None:
    """A cluster, a wire or a slab on a fixed mesh lies in its box ``cell``
    (corner at the origin): fractional coordinates along the open ``axes`` in
    ``[0, 1]`` up to rounding (the mesh holds a node more on each side); read
    on the host, also under TorchScript."""
    volume = float(torch.abs(torch.linalg.det(cell.detach())))
    if not volume > 0.0:
        raise ValueError(
            message(
                "cell",
                "the box of a cluster, wire or slab on a fixed mesh (three "
                "independent lattice vectors, those of the open directions "
                "bounding the atoms)",
                "a cell of volume " + str(volume),
            )
        )
    fractional = positions.detach() @ torch.linalg.inv(cell.detach())
    columns = torch.tensor(axes, dtype=torch.long, device=positions.device)
    fractional = fractional.index_select(1, columns)
    low, high = float(fractional.min()), float(fractional.max())
    # rounding of a position on a face, in the positions' precision
    tolerance = 1e-5 if positions.dtype == torch.float32 else 1e-12
    if not (low >= -tolerance and high <= 1.0 + tolerance):
        raise ValueError(
            message(
                "positions",
                "inside the box `cell` of a cluster, wire or slab on a fixed "
                "mesh (fractional coordinates along its open lattice vectors in "
                "[0, 1], the box's corner at the origin)",
                "fractional coordinates from " + str(low) + " to " + str(high),
            )
        )


def check_taper_spacing(
    cell: torch.Tensor, ns: List[int], axes: List[int], mesh_spacing: float
) -> None:
    """P3M on a fixed mesh tapers its kernel over a number of nodes set by
    ``mesh_spacing`` (eight smearings at nodes ``mesh_spacing / 2`` apart):
    the box's nodes along the open ``axes`` (the spacing of its lattice planes
    over their number) must not be closer than that; read on the host."""
    volume = torch.abs(torch.linalg.det(cell.detach()))
    for a in axes:
        across = torch.linalg.cross(cell[(a + 1) % 3], cell[(a + 2) % 3]).detach()
        spacing = float(volume / torch.linalg.norm(across)) / ns[a]
        if 2.0 * spacing < mesh_spacing * (1.0 - 1e-9):
            raise ValueError(
                message(
                    "mesh_spacing",
                    "at most twice the node spacing of the box of a P3M fixed "
                    "mesh along its open directions (the kernel tapers over "
                    "eight smearings at nodes mesh_spacing / 2 apart), "
                    + str(2.0 * spacing),
                    str(mesh_spacing),
                )
            )


def check_mesh_inputs(
    node_mask: Optional[torch.Tensor],
    kvectors: Optional[torch.Tensor],
    mesh_filter: Optional[torch.Tensor],
    n_periodic: int,
    fixed_mesh: bool,
    exact_slab: bool,
    exponent: float,
) -> None:
    """Refuse what a mesh calculator cannot compute for a system with
    ``n_periodic`` periodic directions: padded batches, wires of potentials
    other than ``1/r^p`` (``exponent`` of :func:`open_exponent`), and a kept
    filter for a cluster, a wire or an exact slab without a fixed mesh (their
    meshes follow the atoms)."""
    if node_mask is not None or kvectors is not None:
        raise NotImplementedError(
            "mesh calculators do not take `node_mask` or `kvectors` (padded "
            "batches): use forward_batch, or call them once per system"
        )
    if n_periodic == 1 and exponent == 0.0:
        raise ValueError(
            message(
                "periodic",
                "zero, two or three periodic directions for a potential other "
                "than CoulombPotential and InversePowerLawPotential",
                "one (a wire: its kernel is written for 1/r^p)",
            )
        )
    own_mesh = n_periodic < 2 or (n_periodic == 2 and exact_slab)
    if own_mesh and mesh_filter is not None and not fixed_mesh:
        raise ValueError(
            message(
                "mesh_filter",
                "None for a cluster, a wire or an exact slab without "
                "`fixed_mesh` (its mesh follows its atoms)",
                "a filter",
            )
        )
