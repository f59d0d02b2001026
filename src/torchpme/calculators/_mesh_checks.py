"""Checks of the mesh calculators' arguments that depend on the boundary
conditions (one place for PME and P3M, single systems and batches)."""

from typing import Optional

import torch

from .._core.validation import message
from ..potentials import CoulombPotential, InversePowerLawPotential, Potential

__all__ = ["SLAB_METHODS", "check_mesh_inputs", "check_slab_method", "is_coulomb"]

SLAB_METHODS = ("yeh-berkowitz", "exact")


def is_coulomb(potential: Potential) -> bool:
    """Whether ``potential`` is ``1/r`` split by a Gaussian: the potential the
    kernels of wires and exact slabs are written for."""
    if isinstance(potential, CoulombPotential):
        return True
    return isinstance(potential, InversePowerLawPotential) and potential._p == 1


def check_slab_method(slab_method: str, potential: Potential) -> str:
    """``slab_method`` is one of :data:`SLAB_METHODS`; ``"exact"`` needs the
    Coulomb potential (its 2-D kernel is written for ``1/r``)."""
    if slab_method not in SLAB_METHODS:
        raise ValueError(
            message("slab_method", "'yeh-berkowitz' or 'exact'", f"'{slab_method}'")
        )
    if slab_method == "exact" and not is_coulomb(potential):
        raise ValueError(
            message(
                "slab_method",
                "'yeh-berkowitz' for a potential other than CoulombPotential",
                f"'exact' with {type(potential).__name__}",
            )
        )
    return slab_method


def check_mesh_inputs(
    node_mask: Optional[torch.Tensor],
    kvectors: Optional[torch.Tensor],
    mesh_filter: Optional[torch.Tensor],
    n_periodic: int,
    fixed_mesh: bool,
    exact_slab: bool,
    coulomb: bool,
) -> None:
    """Refuse what a mesh calculator cannot compute for a system with
    ``n_periodic`` periodic directions: padded batches, wires of potentials
    other than Coulomb, and a fixed mesh or kept filter for a cluster, a wire
    or an exact slab (their meshes follow the atoms)."""
    if node_mask is not None or kvectors is not None:
        raise NotImplementedError(
            "mesh calculators do not take `node_mask` or `kvectors` (padded "
            "batches): use forward_batch, or call them once per system"
        )
    if n_periodic == 1 and not coulomb:
        raise ValueError(
            message(
                "periodic",
                "zero, two or three periodic directions for a potential other "
                "than CoulombPotential",
                "one (a wire: its kernel is written for 1/r)",
            )
        )
    if n_periodic == 2 and exact_slab:
        if mesh_filter is not None or fixed_mesh:
            raise ValueError(
                message(
                    "slab_method",
                    "'yeh-berkowitz' with `mesh_filter` or `fixed_mesh` (the "
                    "mesh of an exact slab follows its atoms)",
                    "'exact'",
                )
            )
    if n_periodic < 2 and (mesh_filter is not None or fixed_mesh):
        raise ValueError(
            message(
                "periodic",
                "two or three periodic directions with `mesh_filter` or "
                "`fixed_mesh` (the mesh of a cluster or a wire follows its atoms)",
                f"{n_periodic} periodic directions",
            )
        )
