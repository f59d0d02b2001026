"""Checks of what the tuners are given, made before any work starts.

Every entry point of :mod:`torchpme.tuning` checks, in this order: the exponent
(``NotImplementedError``: only Coulomb is tuned), the system, the cutoff, the
accuracy and the bounds of the grid it searches. The messages have the shape of
:func:`torchpme._core.validation.message`: argument, expected, received.
"""

import math
import numbers
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from .._core.validation import (
    check_finite,
    check_index_range,
    check_invertible,
    message,
)
from .._utils import _validate_parameters

#: ``(low name, low, high name, high, smallest allowed, largest allowed)``: the
#: bounds of one axis of a tuner's grid, as :func:`check_inputs` checks them
GridRange = Tuple[str, Any, str, Any, int, int]


def check_accuracy(accuracy: Any) -> float:
    """Raise unless ``accuracy`` is a Python ``float``, finite and > 0."""
    if not isinstance(accuracy, float):
        raise ValueError(
            message("accuracy", "a float", f"{type(accuracy).__name__} {accuracy!r}")
        )
    if not (accuracy > 0.0 and math.isfinite(accuracy)):
        raise ValueError(message("accuracy", "a finite number > 0", f"{accuracy}"))
    return accuracy


def check_flag(argument: str, value: Any) -> bool:
    """``value``, which must be ``True`` or ``False`` (not merely truthy)."""
    if not isinstance(value, bool):
        raise TypeError(
            message(argument, "True or False", f"{type(value).__name__} {value!r}")
        )
    return value


def check_length(argument: str, value: Any) -> float:
    """``value`` as a float; raise unless it is a real number, finite and > 0
    (a cutoff, a smearing, a wavelength, a mesh spacing)."""
    value = real_number(argument, value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(message(argument, "a finite number > 0", f"{value}"))
    return float(value)


def real_number(argument: str, value: Any) -> float:
    """``value`` as a Python float: a real number, a NumPy scalar or a 0-dim real
    tensor (what one gets by looping over a tensor of cutoffs); ``TypeError`` for
    anything else, bools included."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and not (value.is_complex() or value.dtype == torch.bool):
            return float(value.detach())
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise TypeError(
        message(argument, "a real number", f"{type(value).__name__} {value!r}")
    )


def check_cutoff(cutoff: Any) -> float:
    """``cutoff`` as a float; raise unless it is a real number, finite and > 0."""
    return check_length("cutoff", cutoff)


def check_smearing(smearing: Any) -> float:
    """``smearing`` as a float; raise unless it is a real number, finite and > 0."""
    return check_length("smearing", smearing)


def check_nodes(interpolation_nodes: Any, low: int, high: int) -> int:
    """``interpolation_nodes`` as an int, which must be in ``low … high``."""
    nodes = int(interpolation_nodes)
    if nodes != interpolation_nodes or not low <= nodes <= high:
        raise ValueError(
            message(
                "interpolation_nodes",
                f"an integer in {low} … {high}",
                f"{interpolation_nodes}",
            )
        )
    return nodes


def check_system(charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor):
    """Shapes, dtypes and values of a system to tune for (at least one atom, finite
    values, a non-singular cell, some non-zero charge)."""
    for name, value in (("charges", charges), ("cell", cell), ("positions", positions)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(message(name, "a torch.Tensor", f"{type(value).__name__}"))
    if positions.dim() == 2 and positions.shape[0] == 0:
        raise ValueError(message("positions", "at least one atom", "0 atoms"))
    empty = torch.zeros((0, 2), dtype=torch.int64, device=positions.device)
    _validate_parameters(
        charges,
        cell,
        positions,
        empty,
        torch.zeros(0, dtype=positions.dtype, device=positions.device),
    )
    check_finite("positions", positions)
    check_finite("charges", charges)
    check_finite("cell", cell)
    check_invertible("cell", cell)
    if not bool(torch.any(charges != 0)):
        raise ValueError(
            message("charges", "not all zero (nothing to tune for)", "all zeros")
        )


def check_neighbor_list(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
):
    """Shapes and dtypes of a neighbour list for the system, and its values:
    indices of existing atoms, finite distances (the tuners are a front door,
    where values are always checked)."""
    _validate_parameters(charges, cell, positions, neighbor_indices, neighbor_distances)
    check_index_range("neighbor_indices", neighbor_indices, positions.shape[0])
    check_finite("neighbor_distances", neighbor_distances)


def check_candidates(params: Any) -> List[Dict[str, Any]]:
    """``params``, which must be a non-empty list of dicts (keyword arguments of
    a calculator)."""
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise TypeError(message("params", "a list of dicts", f"{params!r}"))
    if len(params) == 0:
        raise ValueError(message("params", "at least one candidate", "[]"))
    return params


def check_tunable(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: Any,
    exponent: int,
) -> float:
    """Checks of every tuning entry point, in this order: exponent
    (``NotImplementedError``), system, cutoff; returns the cutoff as a float."""
    if exponent != 1:
        raise NotImplementedError(
            f"only exponent = 1 (Coulomb) can be tuned, got exponent {exponent}"
        )
    check_system(charges, cell, positions)
    return check_cutoff(cutoff)


def check_inputs(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: Any,
    exponent: int,
    accuracy: Any,
    ranges: Sequence[GridRange],
) -> None:
    """Front-door checks of the ``tune_*`` functions, before any work: exponent
    (``NotImplementedError``, first), system, cutoff, accuracy and the grid
    ``ranges`` (each a :data:`GridRange`)."""
    check_tunable(charges, cell, positions, cutoff, exponent)
    check_accuracy(accuracy)
    for low_name, low, high_name, high, smallest, largest in ranges:
        for name, value in ((low_name, low), (high_name, high)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(message(name, "an int", f"{value!r}"))
            if not smallest <= value <= largest:
                raise ValueError(
                    message(name, f"an int in {smallest} … {largest}", f"{value}")
                )
        if low > high:
            raise ValueError(message(high_name, f">= {low_name} ({low})", f"{high}"))
