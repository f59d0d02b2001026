"""The one validation layer: checks of metadata and values, one message shape.

Every message reads ``` `argument` must be <expected>, got <received>```. Metadata
checks (shape, dtype, device) cost nothing and always run; checks that read tensor
values (:func:`check_finite`, :func:`check_invertible`, index ranges) force a host
synchronisation on accelerators, so calculators run them only when
:func:`torchpme.set_value_checks` is on, while front-door layers (CLI, ASE
calculator, tuners) always run them. All functions are TorchScript-compatible.
"""

import math
import numbers
import operator
from typing import Any, List, Optional

import torch

from .execution import traced, transformed


class ShapeIndexError(ValueError, IndexError):
    """A wrong shape where torch-pme 0.5 raised ``IndexError`` (a 1-D ``positions``):
    new code catches ``ValueError``, code written for torch-pme ``IndexError``."""


class ArgumentAssertionError(ValueError, AssertionError):
    """An invalid combination of arguments where torch-pme 0.5 asserted: new code
    catches ``ValueError``, code written for torch-pme ``AssertionError``."""


def message(argument: str, expected: str, received: str) -> str:
    """The house error message: argument, what was expected, what was received."""
    return f"`{argument}` must be {expected}, got {received}"


def check_shape(argument: str, tensor: torch.Tensor, shape: List[int], text: str):
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``shape`` (-1: any)."""
    ok = tensor.dim() == len(shape)
    if ok:
        for actual, wanted in zip(tensor.shape, shape):
            if wanted >= 0 and actual != wanted:
                ok = False
    if not ok:
        raise ValueError(
            message(argument, f"of shape {text}", f"shape {list(tensor.shape)}")
        )


def check_dtype(argument: str, tensor: torch.Tensor, dtype: torch.dtype, what: str):
    """Raise ``TypeError`` unless ``tensor.dtype == dtype`` (``what`` says why)."""
    if tensor.dtype != dtype:
        raise TypeError(message(argument, f"{what} ({dtype})", f"{tensor.dtype}"))


def check_device(argument: str, tensor: torch.Tensor, device: torch.device, what: str):
    """Raise ``ValueError`` unless ``tensor`` lives on ``device``."""
    if tensor.device != device:
        raise ValueError(message(argument, f"{what} ({device})", f"{tensor.device}"))


def check_floating(argument: str, tensor: torch.Tensor):
    """Raise ``TypeError`` unless ``tensor`` has a floating-point dtype."""
    if not tensor.is_floating_point():
        raise TypeError(message(argument, "a floating-point tensor", f"{tensor.dtype}"))


def check_like(
    argument: str, tensor: torch.Tensor, reference: torch.Tensor, reference_name: str
):
    """Check that ``tensor`` has the dtype and device of ``reference``."""
    check_dtype(argument, tensor, reference.dtype, f"the dtype of `{reference_name}`")
    check_device(
        argument, tensor, reference.device, f"on the device of `{reference_name}`"
    )


def check_positive(argument: str, value: Optional[float]):
    """Raise ``ValueError`` unless ``value`` is a finite number > 0."""
    if value is None or not (value > 0.0) or value == float("inf"):
        raise ValueError(message(argument, "a finite number > 0", f"{value}"))


def check_fixed_mesh(fixed_mesh: Any) -> List[int]:
    """``fixed_mesh`` (three whole numbers ≥ 1: a list, tuple or 1-D tensor) as
    Python ints; a mesh beyond the memory budget is refused
    (:func:`torchpme._core.workload.check_mesh`)."""
    sizes = fixed_mesh.tolist() if isinstance(fixed_mesh, torch.Tensor) else fixed_mesh
    if (
        not isinstance(sizes, (list, tuple))
        or len(sizes) != 3
        or not all(
            isinstance(n, numbers.Real)
            and not isinstance(n, bool)
            and float(n).is_integer()
            and n >= 1
            for n in sizes
        )
    ):
        raise ValueError(
            message("fixed_mesh", "three positive mesh sizes", f"{fixed_mesh!r}")
        )
    from .workload import check_mesh  # workload builds on this module

    check_mesh([float(n) for n in sizes], "fixed_mesh", f"{list(sizes)}")
    return [int(n) for n in sizes]


def count_periodic(periodic: Optional[torch.Tensor]) -> int:
    """The number of periodic directions of a ``(3,)`` bool ``periodic`` (3 for
    None), after a check of its shape and dtype; reads it on the host.

    Under a ``torch.func`` transform (``vmap``) nothing is read and 3 is
    returned: there ``periodic`` only selects the branch-free slab correction.
    ``torch.compile`` reads it (a graph break, or an error with
    ``fullgraph=True``), so that a cluster is never computed as a crystal."""
    if periodic is None:
        return 3
    check_shape("periodic", periodic, [3], "(3,)")
    if periodic.is_floating_point() or periodic.is_complex():
        raise TypeError(message("periodic", "bools", f"{periodic.dtype}"))
    if not torch.jit.is_scripting():
        if transformed(periodic):
            return 3
    return int(torch.count_nonzero(periodic))


@torch.jit.unused
def as_index(value: Any) -> Any:
    """``value`` as a Python int when it is a whole-number type other than bool (a
    NumPy integer, a 0-dim integer tensor); anything else unchanged, for the
    caller's own check."""
    if isinstance(value, bool):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def check_finite_number(argument: str, value: float):
    """Raise ``ValueError`` unless ``value`` is a finite number (NaN and ±inf are
    rejected)."""
    if not (abs(value) < float("inf")):
        raise ValueError(message(argument, "a finite number", f"{value}"))


def check_choice(argument: str, value: str, choices: List[str]):
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(message(argument, f"one of {choices}", f"'{value}'"))


# -- value checks: they read tensor data and synchronise with the device ---------


_VALUE_CHECKS = [False]


def set_value_checks(enabled: bool) -> None:
    """Turn on (or off) the checks that read tensor values in calculators.

    With value checks on, calculators and ``torchpme.lib`` classes also reject
    NaN/inf positions or charges, singular cells and neighbour indices out of
    range. These checks read data, which synchronises with an accelerator and
    breaks ``torch.compile`` graphs, so they are off by default; the front door
    (CLI, ASE calculator, tuners) always runs them.
    """
    _VALUE_CHECKS[0] = bool(enabled)


def check_values(tensor: torch.Tensor) -> bool:
    """Whether value checks should run for data living where ``tensor`` lives.

    On by :func:`set_value_checks`; never while ``torch.compile`` traces or under a
    ``torch.func`` transform (``vmap``); never in TorchScript (which cannot read
    the switch).
    """
    if torch.jit.is_scripting():
        return False
    if traced(tensor):
        return False
    return _VALUE_CHECKS[0]


def reads_cheaply(tensor: torch.Tensor) -> bool:
    """Whether to check values of ``tensor`` that every call can afford to read (a
    3x3 cell for singularity, a filter for NaN): always on CPU (no host
    synchronisation there), on accelerators only with value checks on; never while
    ``torch.compile`` traces or under a ``torch.func`` transform."""
    if torch.jit.is_scripting():
        return tensor.device.type == "cpu"
    if traced(tensor):
        return False
    return tensor.device.type == "cpu" or _VALUE_CHECKS[0]


def check_free_of_nan(argument: str, tensor: torch.Tensor, hint: str):
    """Raise ``ValueError`` (with ``hint`` on what to change) if ``tensor`` holds
    NaN and :func:`reads_cheaply` allows reading it."""
    if reads_cheaply(tensor) and bool(torch.isnan(tensor).any()):
        raise ValueError(message(argument, "free of NaN", "NaN entries") + hint)


def check_finite(argument: str, tensor: torch.Tensor):
    """Raise ``ValueError`` if ``tensor`` holds NaN or infinite entries."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(message(argument, "finite", "NaN or infinite entries"))


@torch.jit.unused
def _host_volume_and_scale(cell: torch.Tensor) -> List[float]:
    """``|det cell|`` and the product of the row norms, from the nine numbers on the
    host (cheaper than a determinant operator on a 3x3 tensor)."""
    a, b, c = cell.detach().tolist()
    volume = abs(
        a[0] * (b[1] * c[2] - b[2] * c[1])
        - a[1] * (b[0] * c[2] - b[2] * c[0])
        + a[2] * (b[0] * c[1] - b[1] * c[0])
    )
    return [volume, math.prod(math.sqrt(sum(x * x for x in row)) for row in (a, b, c))]


def check_invertible(argument: str, cell: torch.Tensor):
    """Raise ``ValueError`` if the 3x3 ``cell`` is singular (zero volume)."""
    if torch.jit.is_scripting():
        volume = float(torch.abs(torch.linalg.det(cell.detach())))
        scale = float(torch.linalg.norm(cell.detach(), dim=1).prod())
    else:
        volume, scale = _host_volume_and_scale(cell)
    if not volume > 1e-10 * scale or not scale > 0:
        raise ValueError(
            message(argument, "a non-singular cell (volume > 0)", f"volume {volume}")
        )


def check_index_range(argument: str, indices: torch.Tensor, size: int):
    """Raise ``ValueError`` unless all ``indices`` lie in ``[0, size)``."""
    if indices.numel() > 0:
        low = int(indices.min())
        high = int(indices.max())
        if low < 0 or high >= size:
            raise ValueError(
                message(argument, f"indices in [0, {size})", f"range [{low}, {high}]")
            )
