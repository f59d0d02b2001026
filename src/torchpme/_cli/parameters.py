"""Step 2 of the front door: the cutoff, smearing and k-space parameters of a run.

:func:`choose_parameters` keeps every value the user fixed (cutoff, smearing,
``lr_wavelength``, ``mesh_spacing``, ``interpolation_nodes``) and tunes the rest
for the requested accuracy through :mod:`torchpme.tuning`; the result,
:class:`Parameters`, carries the error estimate of exactly what will run
(:func:`torchpme.tuning.estimate_error`), and a warning says by how much and
which parameter to change when that estimate misses the accuracy.
"""

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from .._core.validation import message
from ..neighbors import compute_neighbors
from ..tuning.estimate import PARAMETERS

__all__ = [
    "MESH_EXPONENT_MAX",
    "MESH_POINTS_MAX",
    "REQUIRED_PARAMETERS",
    "Parameters",
    "calculator_class",
    "choose_parameters",
    "default_cutoff",
    "grid_bounds",
]


# the tuners' largest mesh exponent (2^10 points along the shortest vector)
MESH_EXPONENT_MAX = 10
# the most mesh points a tuner candidate may have (2 GiB of float64 values)
MESH_POINTS_MAX = 2**28


def calculator_class(method: str):
    """The calculator class of a concrete k-space ``method``."""
    from .. import calculators

    return {
        "ewald": calculators.EwaldCalculator,
        "pme": calculators.PMECalculator,
        "p3m": calculators.P3MCalculator,
    }[method]


def default_cutoff(cell: torch.Tensor, n_atoms: int) -> float:
    """A real-space cutoff of about 2.2 mean interatomic distances, in [5, 12] Å.

    Enough neighbours (about 50 per atom) to let the smearing, hence the
    reciprocal-space work, stay moderate; the tuner then fits the rest to the
    requested accuracy.
    """
    volume = float(torch.abs(torch.linalg.det(cell.detach().to(torch.float64))))
    spacing = (volume / max(n_atoms, 1)) ** (1.0 / 3.0)
    return float(min(12.0, max(5.0, 2.2 * spacing)))


@dataclass
class Parameters:
    """Everything needed to rebuild a calculator: method, cutoff, smearing and the
    reciprocal-space parameters (``lr_wavelength`` or ``mesh_spacing`` and
    ``interpolation_nodes``), and ``error``: the estimated RMS error of exactly
    these parameters (:func:`torchpme.tuning.estimate_error`, prefactor 1;
    ``None`` for the exact direct sum)."""

    method: str
    cutoff: Optional[float] = None
    smearing: Optional[float] = None
    params: Dict[str, Any] = field(default_factory=dict)
    tuning_seconds: float = 0.0
    error: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        result = {"method": self.method}
        if self.cutoff is not None:
            result["cutoff"] = self.cutoff
        if self.smearing is not None:
            result["smearing"] = self.smearing
        result.update(self.params)
        return result

    def describe(self) -> str:
        items = self.as_dict().items()
        parts = [f"{key}={_short(value)}" for key, value in items if key != "method"]
        return ", ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"{value}"


def _tuner(method: str):
    from .. import tuning

    return {"ewald": tuning.tune_ewald, "pme": tuning.tune_pme, "p3m": tuning.tune_p3m}[
        method
    ]


#: the k-space parameters each calculator needs (``fixed_mesh`` is optional),
#: from the one table of calculator keywords in :mod:`torchpme.tuning.estimate`
REQUIRED_PARAMETERS: Dict[str, List[str]] = {
    method: [name for name in names if name != "fixed_mesh"]
    for method, names in PARAMETERS.items()
}


def choose_parameters(
    method: str,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: List[bool],
    accuracy: float,
    cutoff: Optional[float] = None,
    smearing: Optional[float] = None,
    params: Optional[Dict[str, Any]] = None,
) -> Parameters:
    """Cutoff, smearing and k-space parameters of a concrete ``method``.

    Every value given is kept and the others are chosen around it for the
    requested ``accuracy`` (the RMS force error in Gaussian units, e²/Å², see
    :mod:`torchpme.tuning`):

    * missing k-space parameters: :func:`torchpme.tuning.tune_ewald` /
      ``tune_pme`` / ``tune_p3m`` (which time the candidates) for the given or
      derived smearing; with ``mesh_spacing`` given, the fewest interpolation
      nodes that meet the accuracy;
    * missing smearing: from the cutoff (real-space error ``accuracy/2``) or,
      when the k-space parameters are all given, the smearing of the smallest
      error estimate if that one misses;
    * missing cutoff: :func:`default_cutoff`, or with a given smearing the cutoff
      of real-space error ``accuracy/2``.

    The result carries the estimate of exactly what runs
    (:func:`torchpme.tuning.estimate_error`); when it exceeds ``accuracy`` a
    ``UserWarning`` says by what factor and which parameter to change.

    Args:
        method: ``"direct"``, ``"ewald"``, ``"pme"`` or ``"p3m"``.
        charges: ``(N, 1)``; cell ``(3, 3)``; positions ``(N, 3)``.
        periodic: 3 bools.
        accuracy: target accuracy of the tuner (> 0).
        cutoff: real-space cutoff; chosen when ``None``.
        smearing: Gaussian smearing; chosen when ``None``.
        params: k-space parameters; chosen when missing.

    Returns:
        :class:`Parameters`.
    """
    if method == "direct":
        return Parameters(method="direct")
    if not (accuracy > 0.0 and math.isfinite(accuracy)):
        raise ValueError(message("accuracy", "a finite number > 0", f"{accuracy}"))
    for name, value in (("cutoff", cutoff), ("smearing", smearing)):
        if value is not None and not (value > 0.0 and math.isfinite(value)):
            raise ValueError(message(name, "a finite number > 0", f"{value}"))
    from ..tuning.estimate import cutoff_for_smearing, error_parts

    given = dict(params or {})
    for name in given:
        if name not in PARAMETERS[method]:
            raise ValueError(
                message(
                    name,
                    f"a parameter of {method} ({', '.join(PARAMETERS[method])})",
                    f"{name}={given[name]!r}",
                )
            )
    accuracy = float(accuracy)
    fixed = [name for name, value in (("cutoff", cutoff), ("smearing", smearing))
             if value is not None]  # fmt: skip
    start = time.perf_counter()
    # open directions: the estimates rate the periodic cell with the vacuum of
    # the doubled mesh; the calculator gets its options (an exact slab)
    cell, options = _open_cell(method, cell, positions, periodic, cutoff)
    if cutoff is None and smearing is not None:
        cutoff = cutoff_for_smearing(charges, cell, positions, smearing, accuracy)
    elif cutoff is None:
        cutoff = default_cutoff(cell, positions.shape[0])
    cutoff = float(cutoff)
    smearing = None if smearing is None else float(smearing)

    def parts(sigma: float, chosen: Dict[str, Any]) -> Dict[str, float]:
        return error_parts(method, charges, cell, positions, cutoff, sigma, chosen)

    if "fixed_mesh" in given and "mesh_spacing" not in given:
        # the calculator needs a spacing; with a fixed mesh it only labels it
        shortest = float(torch.linalg.norm(cell.detach(), dim=1).min())
        given["mesh_spacing"] = 2.0 * shortest / max(min(given["fixed_mesh"]) - 1, 1)
    missing = [name for name in REQUIRED_PARAMETERS[method] if name not in given]
    if not missing:
        chosen = given
        if smearing is None:
            smearing = _best_smearing(
                parts,
                chosen,
                _smearing(method, charges, cell, positions, cutoff, accuracy),
                accuracy,
            )
    elif missing == ["interpolation_nodes"]:
        sigma = smearing or _smearing(
            method, charges, cell, positions, cutoff, accuracy
        )
        chosen = _fewest_nodes(method, parts, sigma, given, accuracy)
        smearing = sigma
    else:
        chosen, smearing = _tuned(
            method, charges, cell, positions, periodic, accuracy, cutoff, smearing,
            given,
        )  # fmt: skip
    error = parts(smearing, chosen)
    elapsed = time.perf_counter() - start
    if error["error"] > accuracy:
        warnings.warn(
            _advice(method, error, accuracy, fixed), UserWarning, stacklevel=2
        )
    chosen = {**chosen, **options}
    return Parameters(method, cutoff, smearing, chosen, elapsed, error["error"])


def _open_cell(method, cell, positions, periodic, cutoff):
    """``(cell, options)`` of :func:`torchpme.tuning._open.proxy_cell` for a
    mesh method on a structure with open directions, else ``(cell, {})``."""
    if all(periodic) or method not in ("pme", "p3m"):
        return cell, {}
    from ..tuning._open import proxy_cell

    flags = torch.tensor(periodic, dtype=torch.bool, device=cell.device)
    # the proxy's open extent includes a cutoff; before one is chosen, 6 Å
    return proxy_cell(cell, positions, flags, 6.0 if cutoff is None else cutoff)


def _smearing(method, charges, cell, positions, cutoff, accuracy) -> float:
    """The tuners' smearing: real-space force error ``accuracy/2``."""
    from ..tuning.tuner import TunerBase

    tuner = TunerBase(charges, cell, positions, cutoff, calculator_class(method))
    return tuner.estimate_smearing(accuracy)


def _best_smearing(parts, chosen, start: float, accuracy: float) -> float:
    """With fixed k-space parameters and cutoff: ``start`` if its estimate meets
    the accuracy with the tuners' margin, else the smearing of the smallest
    estimate (a golden-section search in ``log σ``; the cost does not change)."""
    from ..tuning.tuner import SAFETY

    if SAFETY * parts(start, chosen)["error"] <= accuracy:
        return start
    low, high = math.log(start / 8.0), math.log(start * 8.0)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = parts(math.exp(a), chosen)["error"], parts(math.exp(b), chosen)["error"]
    for _ in range(16):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = parts(math.exp(a), chosen)["error"]
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = parts(math.exp(b), chosen)["error"]
    return math.exp(a if fa < fb else b)


def _fewest_nodes(method, parts, smearing: float, given, accuracy: float):
    """With the mesh given: the fewest interpolation nodes (the tuner's range)
    whose estimate meets the accuracy with the tuners' margin, else the most
    accurate."""
    from ..tuning.tuner import SAFETY

    low, high = (3, 7) if method == "pme" else (2, 5)
    best, best_error = None, math.inf
    for nodes in range(low, high + 1):
        chosen = {**given, "interpolation_nodes": nodes}
        error = parts(smearing, chosen)["error"]
        if SAFETY * error <= accuracy:
            return chosen
        if error < best_error:
            best, best_error = chosen, error
    return best


def _tuned(method, charges, cell, positions, periodic, accuracy, cutoff, smearing,
           given):  # fmt: skip
    """The tuner's k-space parameters (and smearing, unless given), with a given
    ``interpolation_nodes`` as the only node count."""
    from ..tuning._mesh import check_nodes

    sigma = smearing or _smearing(method, charges, cell, positions, cutoff, accuracy)
    bounds = grid_bounds(method, sigma, cell)
    if "interpolation_nodes" in given:
        low, high = (3, 7) if method == "pme" else (1, 5)
        try:
            nodes = check_nodes(given["interpolation_nodes"], low, high)
        except (TypeError, ValueError):
            raise ValueError(
                message(
                    "interpolation_nodes",
                    f"an integer in {low} … {high} for {method}",
                    f"{given['interpolation_nodes']!r}",
                )
            ) from None
        bounds.update(nodes_lo=nodes, nodes_hi=nodes)
    indices, distances = compute_neighbors(positions, cell, cutoff, periodic)
    if not all(periodic):  # the tuners of open directions (PME and P3M)
        bounds["periodic"] = torch.tensor(periodic, device=cell.device)
    with warnings.catch_warnings():
        # a miss is reported once, with the user's parameter names, by the caller
        warnings.filterwarnings("ignore", "No parameter set meets", UserWarning)
        tuned_smearing, tuned, _ = _tuner(method)(
            charges,
            cell,
            positions,
            cutoff,
            neighbor_indices=indices,
            neighbor_distances=distances.detach(),
            accuracy=accuracy,
            smearing=smearing,
            **bounds,
        )
    tuned.pop("slab_method", None)  # added back with the options
    tuned.update(given)
    return tuned, float(tuned_smearing)


def _advice(
    method: str, parts: Dict[str, float], accuracy: float, fixed: List[str]
) -> str:
    """One line: by what factor the estimate misses and which of the user's
    parameters to change (the smearing only where the user fixed it)."""
    largest = max(parts["real"], parts["kspace"])
    changes = []
    if parts["real"] >= 0.5 * largest:
        changes.append("increase cutoff")
        if "smearing" in fixed:
            changes.append("decrease smearing")
    if parts["kspace"] >= 0.5 * largest:
        if method == "ewald":
            changes.append("decrease lr_wavelength")
        else:
            changes += ["decrease mesh_spacing", "increase interpolation_nodes"]
        if "smearing" in fixed and "decrease smearing" not in changes:
            changes.append("increase smearing")
    changes.append("loosen accuracy")
    return (
        f"the estimated error of these parameters is {parts['error'] / accuracy:.3g} "
        f"times the requested accuracy: {', '.join(changes[:-1])} or {changes[-1]}"
    )


def grid_bounds(method: str, smearing: float, cell: torch.Tensor) -> Dict[str, int]:
    """Search ranges for the tuner, scaled by the smearing instead of fixed.

    The long-range part of a Gaussian of width ``σ`` carries no information on
    scales much finer than ``σ``, so the grids need to reach (and need not go
    beyond) Ewald wavelengths ``λ = L_min/n ≈ σ/2`` and mesh spacings
    ``h = 2 L_min/(2^e − 1) ≈ σ/6`` (finer than the tuner ever picks for
    accuracies down to 1e-8). The Ewald default ``n ≤ 14`` stops short of that
    in large cells; the mesh default ``e ≤ 7`` (128 points per axis) as well, so
    the mesh bound grows with the cell up to the tuners' largest, ``e = 10``
    (whether such a mesh fits in memory is checked before the work, not here).
    """
    shortest = float(torch.linalg.norm(cell.detach(), dim=1).min())
    if method == "ewald":
        return {"ns_hi": max(14, math.ceil(2.0 * shortest / smearing) + 1)}
    finest = math.ceil(math.log2(12.0 * shortest / smearing + 1.0))
    exponent = min(MESH_EXPONENT_MAX, max(3, finest))
    ratios = math.prod(
        float(length) / shortest for length in torch.linalg.norm(cell.detach(), dim=1)
    )
    # candidates beyond a sane mesh size are not even rated
    while exponent > 3 and 8.0**exponent * ratios > MESH_POINTS_MAX:
        exponent -= 1
    return {"mesh_hi": exponent}
