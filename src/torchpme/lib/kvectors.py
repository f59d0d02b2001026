"""k-vectors and mesh sizes (compatible API over :mod:`torchpme._core.kspace`)."""

from typing import List

import torch

from .._core import kspace, workload
from .._core.validation import (
    check_device,
    check_finite,
    check_invertible,
    check_positive,
    check_shape,
    message,
    reads_cheaply,
)

__all__ = [
    "compute_batched_kvectors",
    "generate_kvectors_for_ewald",
    "generate_kvectors_for_mesh",
    "get_ns_mesh",
]


def get_ns_mesh(cell: torch.Tensor, mesh_spacing: float) -> torch.Tensor:
    """Mesh size for a target spacing: per axis the smallest power of two ≥ 2L/h + 1.

    ``n_d = 2^⌈log₂(2‖a_d‖/h + 1)⌉``, which resolves wavelengths down to ``h``.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        mesh_spacing: target mesh spacing ``h`` (> 0).

    Returns:
        int64 tensor ``(3,)`` on the device of ``cell``.

    Example:
        >>> get_ns_mesh(10.0 * torch.eye(3), 1.0)
        tensor([32, 32, 32])
    """
    check_shape("cell", cell, [3, 3], "(3, 3)")
    check_positive("mesh_spacing", mesh_spacing)
    if reads_cheaply(cell):
        check_finite("cell", cell)
    lengths = torch.linalg.norm(cell, dim=1)
    exponent = torch.ceil(torch.log2(2.0 * (lengths / mesh_spacing) + 1.0))
    return torch.pow(2, exponent.to(torch.int64))


def _sizes(cell: torch.Tensor, ns: torch.Tensor) -> List[int]:
    check_shape("cell", cell, [3, 3], "(3, 3)")
    check_shape("ns", ns, [3], "(3,)")
    check_device("ns", ns, cell.device, "on the device of `cell`")
    if reads_cheaply(cell):
        check_invertible("cell", cell)
    sizes = [int(ns[0]), int(ns[1]), int(ns[2])]
    if min(sizes) < 1:
        raise ValueError(message("ns", "positive grid sizes", str(sizes)))
    if not torch.jit.is_scripting():
        _check_grid(sizes)
    return sizes


@torch.jit.unused
def _check_grid(sizes: List[int]) -> None:
    """Refuse a grid whose k-vectors (three numbers a point) exceed the memory
    budget, before allocating them."""
    workload.check_mesh([float(n) for n in sizes], "ns", f"{sizes}")


def generate_kvectors_for_mesh(cell: torch.Tensor, ns: torch.Tensor) -> torch.Tensor:
    """k-vectors of a mesh in ``torch.fft.rfftn`` order.

    ``k[i, j, l] = m_i b_0 + m_j b_1 + m_l b_2`` with FFT frequencies ``m`` (half
    layout on the last axis) and ``B = 2π (cell⁻¹)ᵀ``.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        ns: ``(3,)`` integer mesh size.

    Returns:
        ``(n0, n1, n2//2 + 1, 3)`` tensor in the dtype of ``cell``.
    """
    return kspace.kvectors_for_mesh(cell, _sizes(cell, ns))


def generate_kvectors_for_ewald(cell: torch.Tensor, ns: torch.Tensor) -> torch.Tensor:
    """All k-vectors of a full FFT layout, flattened: ``(n0·n1·n2, 3)``.

    Row ``(i·n1 + j)·n2 + l`` is ``m_i b_0 + m_j b_1 + m_l b_2``; row 0 is ``k = 0``.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        ns: ``(3,)`` integer grid size.
    """
    return kspace.kvectors_for_ewald(cell, _sizes(cell, ns))


def compute_batched_kvectors(lr_wavelength: float, cells: torch.Tensor) -> torch.Tensor:
    """Ewald k-vectors of a batch of cells, zero-padded to a common length.

    Each cell gets the grid ``n_d = ⌈‖a_d‖/λ⌉`` of :func:`generate_kvectors_for_ewald`.
    Padding rows are zero vectors, which add nothing for kernels that vanish at
    ``k = 0``.

    Args:
        lr_wavelength: ``λ`` (> 0).
        cells: ``(B, 3, 3)`` cells.

    Returns:
        ``(B, K_max, 3)`` tensor.
    """
    check_positive("lr_wavelength", lr_wavelength)
    check_shape("cells", cells, [-1, 3, 3], "(B, 3, 3)")
    kvectors: List[torch.Tensor] = []
    for cell in cells:
        if reads_cheaply(cell):
            check_invertible("cells", cell)
        lengths = torch.linalg.norm(cell, dim=1).tolist()
        kvectors.append(
            kspace.kvectors_for_ewald(cell, kspace.ewald_size(lengths, lr_wavelength))
        )
    return torch.nn.utils.rnn.pad_sequence(kvectors, batch_first=True)
