"""The estimated error of a complete parameter set, for any method.

:func:`estimate_error` rates exactly the calculator that ``method`` and the
keyword arguments build, with the estimates the tuners select with
(:class:`~torchpme.tuning.ewald.EwaldErrorEstimate`,
:class:`~torchpme.tuning.pme.PMEErrorEstimate`,
:class:`~torchpme.tuning.p3m.P3MErrorEstimate`), without a safety factor.
"""

from typing import Any, Dict

import numpy as np
import torch

from .._core.validation import message
from . import _density
from ._estimates import largest_error, realspace_error
from ._validation import check_cutoff, check_length, check_smearing, check_system
from .ewald import EwaldErrorEstimate
from .p3m import P3MErrorEstimate
from .pme import PMEErrorEstimate

__all__ = ["cutoff_for_smearing", "estimate_error"]

#: the keyword arguments of each calculator that decide its error
PARAMETERS: Dict[str, tuple] = {
    "ewald": ("lr_wavelength",),
    "pme": ("mesh_spacing", "interpolation_nodes", "fixed_mesh"),
    "p3m": ("mesh_spacing", "interpolation_nodes", "fixed_mesh"),
}
_ESTIMATES = {
    "ewald": EwaldErrorEstimate,
    "pme": PMEErrorEstimate,
    "p3m": P3MErrorEstimate,
}
# the calculators' default number of interpolation nodes
_DEFAULT_NODES = 4


def error_parts(
    method: str,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    smearing: float,
    params: Dict[str, Any],
) -> Dict[str, float]:
    """The estimate and its parts: ``{"error", "real", "kspace"}``, the real-space
    and reciprocal-space parts each the larger of the force and potential terms.

    Arguments as :func:`estimate_error` (``params`` as a dict); validated here.
    """
    if method not in PARAMETERS:
        raise ValueError(message("method", f"one of {list(PARAMETERS)}", f"{method!r}"))
    check_system(charges, cell, positions)
    cutoff = check_cutoff(cutoff)
    smearing = check_smearing(smearing)
    allowed = PARAMETERS[method]
    for name in params:
        if name not in allowed:
            raise TypeError(
                message(
                    "params",
                    f"keyword arguments of the {method} calculator {list(allowed)}",
                    f"unexpected {name!r}",
                )
            )
    estimate = _ESTIMATES[method](charges, cell, positions)
    if method == "ewald":
        if "lr_wavelength" not in params:
            raise TypeError(message("lr_wavelength", "a number", "nothing"))
        wavelength = check_length("lr_wavelength", params["lr_wavelength"])
        key = estimate.kspace_key(wavelength)
    else:
        if "mesh_spacing" not in params:
            raise TypeError(message("mesh_spacing", "a number", "nothing"))
        key = estimate.kspace_key(
            check_length("mesh_spacing", params["mesh_spacing"]),
            params.get("interpolation_nodes", _DEFAULT_NODES),
            params.get("fixed_mesh"),
        )
    parts = estimate.components(smearing, cutoff, key)
    return {
        "error": largest_error(parts),
        "real": max(parts["force_real"], parts["potential_real"]),
        "kspace": max(parts["force_kspace"], parts["potential_kspace"]),
    }


def estimate_error(
    method: str,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    smearing: float,
    **params,
) -> float:
    """Estimated RMS error of the forces (and of the potentials) of one calculator.

    The random-charge estimate of :mod:`torchpme.tuning._estimates` for the
    calculator ``method`` builds with ``smearing`` and ``**params``, plus the
    Kolafa–Perram real-space term of ``cutoff``: the larger of the RMS force
    error (charge²/length², prefactor 1, as the tuners' ``accuracy``) and the RMS
    error of the per-atom potentials. It is a prediction, not a bound: measured
    errors stay below :data:`~torchpme.tuning.tuner.SAFETY` (1.5) times it on
    the systems of the tests (disordered ones within 0.6–1.3 of it, crystals
    lower), which is the margin the tuners leave.

    Args:
        method: ``"ewald"``, ``"pme"`` or ``"p3m"``.
        charges: ``(N, 1)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
        cutoff: real-space cutoff of the neighbour list.
        smearing: Gaussian smearing of the potential.
        **params: the calculator's keyword arguments: ``lr_wavelength`` for
            Ewald; ``mesh_spacing``, ``interpolation_nodes`` (default 4) and
            optionally ``fixed_mesh`` for PME and P3M.

    Returns:
        The estimated RMS error (Python float).

    Example:
        >>> import torch
        >>> from torchpme.tuning import estimate_error
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> cell = 4.0 * torch.eye(3, dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0, 0], [2.0, 2, 2]], dtype=torch.float64)
        >>> error = estimate_error(
        ...     "pme", charges, cell, positions, 4.0, 1.0, mesh_spacing=0.5,
        ...     interpolation_nodes=4)
        >>> error < 1e-3
        True
    """
    return error_parts(method, charges, cell, positions, cutoff, smearing, params)[
        "error"
    ]


def cutoff_for_smearing(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    smearing: float,
    accuracy: float,
) -> float:
    """The real-space cutoff whose Kolafa–Perram force error with ``smearing`` is
    ``accuracy / 2`` (the share the tuners give real space), by bisection.

    Uses the occupied volume of slabs and clusters as the tuners do
    (:mod:`torchpme.tuning._density`).

    Args:
        charges, cell, positions: the system.
        smearing: the fixed Gaussian smearing (> 0).
        accuracy: target RMS force error (> 0).

    Returns:
        The cutoff (Python float).
    """
    check_system(charges, cell, positions)
    smearing = check_smearing(smearing)
    accuracy = check_length("accuracy", accuracy)
    cell_array = cell.detach().to("cpu", torch.float64).numpy()
    layers = _density.layer_thicknesses(
        cell_array, positions.detach().to("cpu", torch.float64).numpy()
    )
    volume = abs(float(np.linalg.det(cell_array)))
    squares = float(torch.sum(charges.detach().to(torch.float64) ** 2))
    n_atoms = int(positions.shape[0])

    def error(cutoff: float) -> float:
        occupied = volume / _density.density_factor(*layers, cutoff)
        return realspace_error(squares, n_atoms, occupied, smearing, cutoff)

    low, high = 1e-3 * smearing, smearing
    while error(high) > accuracy / 2.0 and high < 1e3 * smearing:
        low, high = high, 2.0 * high
    for _ in range(60):
        middle = 0.5 * (low + high)
        if error(middle) > accuracy / 2.0:
            low = middle
        else:
            high = middle
    return high
