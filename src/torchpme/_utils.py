"""Validation of calculator inputs (the compatible ``_validate_parameters``)."""

from typing import Optional

import torch

from ._core import geometry
from ._core.pairlist import indices_of
from ._core.validation import (
    ShapeIndexError,
    check_device,
    check_dtype,
    check_finite,
    check_floating,
    check_index_range,
    check_invertible,
    check_like,
    check_shape,
    check_values,
    message,
    reads_cheaply,
)


def _validate_parameters(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    periodic: Optional[torch.Tensor] = None,
    pair_mask: Optional[torch.Tensor] = None,
    node_mask: Optional[torch.Tensor] = None,
    kvectors: Optional[torch.Tensor] = None,
    cell_required: bool = True,
) -> None:
    """Check shapes, dtypes and devices of calculator inputs against ``positions``.

    Metadata checks always run. With :func:`torchpme.set_value_checks` on, values are
    checked too: finite positions, charges and cell, neighbour indices in
    ``[0, N)``, no pair closer than ``1e-4`` (coincident atoms) and, for a slab
    (``periodic`` with two ``True``), a vacuum gap wide enough for the slab
    correction (:func:`torchpme._core.geometry.check_slab`). A cell that is used
    (``cell_required``: reciprocal-space methods) must be non-singular; that 3x3
    check always runs on CPU and with value checks on elsewhere. Direct (real-space
    only) evaluation passes ``cell_required=False``, so any cell, e.g. zeros, is
    accepted there.
    """
    if not torch.jit.is_scripting():
        neighbor_indices = indices_of(neighbor_indices)  # of a PairList
        _check_tensors(charges, cell, positions, neighbor_indices, neighbor_distances)
    same_device = "on the device of `positions`"
    same_dtype = "the dtype of `positions`"
    if not torch.jit.is_scripting() and positions.dim() < 2:
        raise ShapeIndexError(message("positions", "(N, 3)", f"{positions.shape}"))
    check_shape("positions", positions, [-1, 3], "(N, 3)")
    check_floating("positions", positions)
    if positions.dtype != torch.float32 and positions.dtype != torch.float64:
        raise TypeError(
            message(
                "positions",
                "float32 or float64 (cells are inverted, which half precision "
                "cannot do)",
                f"{positions.dtype}",
            )
        )
    n_atoms = positions.shape[0]
    check_shape("cell", cell, [3, 3], "(3, 3)")
    check_like("cell", cell, positions, "positions")
    check_shape("charges", charges, [n_atoms, -1], f"(N, C) with N = {n_atoms}")
    check_like("charges", charges, positions, "positions")
    check_shape("neighbor_indices", neighbor_indices, [-1, 2], "(P, 2)")
    check_device(
        "neighbor_indices",
        neighbor_indices,
        positions.device,
        "on the device of `positions`",
    )
    if neighbor_indices.is_floating_point() or neighbor_indices.is_complex():
        raise TypeError(
            message(
                "neighbor_indices", "an integer tensor", f"{neighbor_indices.dtype}"
            )
        )
    n_pairs = neighbor_indices.shape[0]
    check_shape(
        "neighbor_distances", neighbor_distances, [n_pairs], f"(P,) with P = {n_pairs}"
    )
    # device before dtype, in torch-pme's order
    check_device(
        "neighbor_distances", neighbor_distances, positions.device, same_device
    )
    check_dtype("neighbor_distances", neighbor_distances, positions.dtype, same_dtype)
    if periodic is not None:
        check_shape("periodic", periodic, [3], "(3,)")
        check_device("periodic", periodic, positions.device, same_device)
    if pair_mask is not None:
        check_shape("pair_mask", pair_mask, [n_pairs], f"(P,) with P = {n_pairs}")
        check_device("pair_mask", pair_mask, positions.device, same_device)
        check_dtype("pair_mask", pair_mask, torch.bool, "a boolean mask")
    if node_mask is not None:
        check_shape("node_mask", node_mask, [n_atoms], f"(N,) with N = {n_atoms}")
        check_device("node_mask", node_mask, positions.device, same_device)
        check_dtype("node_mask", node_mask, torch.bool, "a boolean mask")
    if kvectors is not None:
        check_shape("kvectors", kvectors, [-1, 3], "(K, 3)")
        check_device("kvectors", kvectors, positions.device, same_device)
        check_dtype("kvectors", kvectors, positions.dtype, same_dtype)
    if reads_cheaply(neighbor_indices):
        # two reductions cost nothing next to the pair sum on CPU; on an
        # accelerator they synchronise, so there they wait for value checks
        check_index_range("neighbor_indices", neighbor_indices, n_atoms)
    if check_values(positions):
        check_finite("positions", positions)
        check_finite("charges", charges)
        check_finite("cell", cell)
        check_finite("neighbor_distances", neighbor_distances)
        if not torch.jit.is_scripting():
            _check_geometry(
                cell,
                positions,
                neighbor_indices,
                neighbor_distances,
                periodic,
                pair_mask,
                cell_required,
            )
    if cell_required and reads_cheaply(cell):
        check_invertible("cell", cell)


@torch.jit.unused
def _check_geometry(
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    periodic: Optional[torch.Tensor],
    pair_mask: Optional[torch.Tensor],
    cell_required: bool,
) -> None:
    """Value checks of the geometry: coincident atoms, slab vacuum."""
    distances = neighbor_distances.detach()
    if pair_mask is not None:
        distances = torch.where(pair_mask, distances, torch.inf)
    geometry.check_coincident(
        neighbor_indices, distances, argument="neighbor_distances"
    )
    if cell_required and periodic is not None:
        geometry.check_slab(positions, cell, [bool(p) for p in periodic.tolist()])


@torch.jit.unused
def _check_tensors(charges, cell, positions, neighbor_indices, neighbor_distances):
    """Raise ``TypeError`` for inputs that are not tensors (lists, NumPy arrays)."""
    for name, value in (
        ("charges", charges),
        ("cell", cell),
        ("positions", positions),
        ("neighbor_indices", neighbor_indices),
        ("neighbor_distances", neighbor_distances),
    ):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                message(
                    name,
                    "a torch.Tensor (convert with torch.as_tensor(...))",
                    f"{type(value).__module__}.{type(value).__name__}",
                )
            )
