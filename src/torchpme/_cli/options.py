"""Options and checks shared by ``torchpme`` and ``torchpme bench``.

Both commands import from here (and never from each other): the options common
to both, the device and dtype they name, and the checks of the paths they write.
"""

import argparse
import math
import os
import sys

from .._core.validation import message

__all__ = [
    "DEFAULT_ACCURACY",
    "CLIError",
    "available_device",
    "check_accuracy",
    "check_writable",
    "common_options",
    "dtype_device",
    "one_line",
    "show_progress",
]

#: default ``--accuracy``: RMS force error in units of the output forces (eV/Å
#: with the default units); see the README for what it buys in MD
DEFAULT_ACCURACY = 1e-4


class CLIError(Exception):
    """An error for the user: printed as one line, exit status 1."""


def common_options(parser: argparse.ArgumentParser) -> None:
    """Add the options both commands take (accuracy, cutoff, device, ...)."""
    parser.add_argument(
        "--accuracy",
        type=float,
        default=DEFAULT_ACCURACY,
        help="target RMS force error in the units of the output forces (eV/Å "
        "with --units eV_A; generally energy unit/Å); the accuracy printed is the "
        f"error estimate of the parameters that ran (default {DEFAULT_ACCURACY:g})",
    )
    parser.add_argument(
        "--cutoff",
        type=float,
        default=None,
        help="real-space cutoff in Å (default: about 2.2 mean interatomic "
        "distances, between 5 and 12 Å)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)"
    )
    parser.add_argument(
        "--dtype",
        default="float64",
        choices=["float32", "float64"],
        help="floating-point precision (default float64)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress bars on standard error (default: when it is a terminal)",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the Python traceback of errors",
    )


def check_accuracy(value: float, argument: str = "--accuracy") -> float:
    """Raise ``CLIError`` unless ``value`` is a finite number > 0."""
    if not (value > 0.0 and math.isfinite(value)):
        raise CLIError(message(argument, "a finite number > 0", f"{value}"))
    return value


def check_writable(path: str, argument: str) -> None:
    """Raise ``CLIError`` unless ``path`` names a file in an existing, writable
    folder (checked before any work, so that a long run does not end in an
    ``OSError``)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(message(argument, "a file name", f"the folder '{path}'"))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise CLIError(
            message(argument, "a file in an existing, writable folder", f"'{path}'")
        )


def show_progress(args) -> bool:
    """Progress bars when asked, or by default when standard error is a terminal."""
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


def one_line(error: BaseException) -> str:
    """The text of an exception on one line (its type name when it has none)."""
    text = " ".join(str(error).split())
    return text if text else type(error).__name__


def available_device(device, argument: str = "--device"):
    """``device`` as a ``torch.device`` after allocating on it, or a ``ValueError``
    naming ``argument`` (e.g. ``cuda`` in a build or on a machine without CUDA)."""
    import torch

    try:
        chosen = torch.device("cpu" if device is None else device)
        torch.zeros(1, device=chosen)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(
            message(argument, "an available torch device", f"'{device}'")
            + f" ({one_line(error)})"
        ) from None
    return chosen


def dtype_device(args):
    """The torch dtype and device named by ``--dtype`` and ``--device``."""
    import torch

    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    return dtype, available_device(args.device)
