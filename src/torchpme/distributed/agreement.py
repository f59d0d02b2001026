"""What the ranks of a distributed call check: their own arguments, then that
they agree on everything that must be the same everywhere."""

import zlib
from typing import List

import torch

from .._core.validation import (
    check_finite,
    check_floating,
    check_invertible,
    check_like,
    check_shape,
    message,
)

__all__ = ["AGREED", "FIELDS", "agree", "check_inputs", "fingerprint"]

# the metadata every rank publishes once per call: what must agree, then where
# its atoms are (buffer planes, occupied arc of s0)
AGREED = [
    "`cell`",
    "the mesh size",
    "the method (calculator, potential, smearing, cutoff, interpolation nodes)",
    "the dtype and the number of charge channels",
    "the inputs requiring gradients (charges, positions, cell, grad mode)",
]
FIELDS = [9, 3, 4, 2, 4]


def fingerprint(
    calculator, cutoff: float, charges: torch.Tensor, cell: torch.Tensor, positions
) -> List[float]:
    """What every rank must agree on, as numbers (``FIELDS`` of them)."""
    method = f"{type(calculator).__name__}/{type(calculator.potential).__name__}"
    grads = [t.requires_grad for t in (charges, positions, cell)]
    return (
        cell.detach().reshape(-1).tolist()
        + [float(n) for n in calculator._mesh_size(cell)]
        + [
            float(zlib.crc32(method.encode())),
            float(calculator.potential.smearing),
            cutoff,
            float(calculator.interpolation_nodes),
        ]
        + [float(charges.element_size()), float(charges.shape[1])]
        + [float(flag) for flag in grads + [torch.is_grad_enabled()]]
    )


def check_inputs(charges, cell, positions) -> None:
    """This rank's arguments: tensors of the right shapes, dtype and device,
    finite, and an invertible cell."""
    for name, value in (
        ("charges", charges),
        ("cell", cell),
        ("positions", positions),
    ):
        if not isinstance(value, torch.Tensor):
            raise TypeError(message(name, "a tensor", f"{type(value).__name__}"))
    check_shape("cell", cell, [3, 3], "(3, 3)")
    check_floating("cell", cell)
    check_shape("positions", positions, [-1, 3], "(N, 3)")
    check_like("positions", positions, cell, "cell")
    check_shape("charges", charges, [positions.shape[0], -1], "(N, C)")
    check_like("charges", charges, cell, "cell")
    # values read on the host: the exchanges synchronise the ranks anyway
    for name, value in (
        ("cell", cell),
        ("positions", positions),
        ("charges", charges),
    ):
        check_finite(name, value)
    check_invertible("cell", cell)


def agree(rows: torch.Tensor) -> None:
    """Raise the same ``ValueError`` on every rank where the ranks disagree."""
    start = 0
    for what, width in zip(AGREED, FIELDS):
        block = rows[:, start : start + width]
        differ = [
            rank
            for rank in range(rows.shape[0])
            if not torch.equal(block[rank], block[0])
        ]
        if differ:
            raise ValueError(
                f"{what} must be the same on every rank of the process group, "
                f"got ranks {differ} different from rank 0"
            )
        start += width
