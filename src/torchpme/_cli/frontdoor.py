"""What the CLI and the ASE calculator share between reading a structure and
printing results: checks of the user's fixed parameters, accuracy in the units
of the output, one run through :mod:`torchpme._cli.engine`, the Madelung check.

**Accuracy units.** At the front door ``accuracy`` is the target RMS force error
in the units of the output forces: energy unit per Å of the chosen Coulomb
prefactor (eV/Å for ``eV_A``). The tuners work with prefactor 1 (e²/Å²), so the
front door hands them ``accuracy / prefactor`` and reports the engine's error
estimate of what ran, ``Parameters.error × prefactor``, in the output units.
"""

import math
import re
import time
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .._core.validation import check_choice, message
from . import engine
from .parameters import REQUIRED_PARAMETERS
from .qeq import check_table, evaluate_qeq, gaussian_cutoff, qeq_arrays

__all__ = [
    "ASE_KEYWORDS",
    "FLOAT32_ROUNDING",
    "K_SPACE",
    "MADELUNG_ACCURACY",
    "MADELUNG_CUTOFF",
    "Result",
    "check_arguments",
    "check_fixed",
    "compute",
    "madelung_check",
    "reported_error",
    "rounding_error",
    "translate_advice",
    "warn_rounding",
]

#: k-space parameters the front ends accept, and the methods they belong to
K_SPACE = {
    name: tuple(m for m, names in REQUIRED_PARAMETERS.items() if name in names)
    for names in REQUIRED_PARAMETERS.values()
    for name in names
}


def _positive(name: str, value: Any, label: str) -> None:
    if name == "interpolation_nodes":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(message(label, "an integer", f"{value!r}"))
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not (value > 0.0 and math.isfinite(value))
    ):
        raise ValueError(message(label, "a finite number > 0", f"{value!r}"))


def check_fixed(
    method: str,
    periodic: List[bool],
    params: Dict[str, Any],
    smearing: Optional[float],
    labels: Dict[str, str],
    cutoff: Optional[float] = None,
) -> None:
    """Refuse fixed parameters that the run would not use.

    Args:
        method: the user's method (``"auto"``, ``"ewald"``, ``"pme"``, ``"p3m"``).
        periodic: 3 bools (no periodic axis with method ``"auto"``: the
            direct sum, which has neither smearing nor k-space parameters).
        params: fixed k-space parameters.
        smearing: fixed smearing or ``None``.
        cutoff: fixed real-space cutoff or ``None``.
        labels: the user's name of each argument (``"mesh_spacing"`` →
            ``"--mesh-spacing"``; also ``"method"``, ``"smearing"``, ``"params"``).

    Raises:
        ValueError/TypeError: naming the argument, what was expected, what was given.
    """
    for name, value in params.items():
        if name not in K_SPACE:
            raise ValueError(
                message(
                    labels["params"],
                    f"a dict with keys from {sorted(K_SPACE)}",
                    f"the key '{name}'",
                )
            )
        _positive(name, value, labels[name])
    if cutoff is not None:
        _positive("cutoff", cutoff, labels["cutoff"])
    fixed = dict(params)
    if smearing is not None:
        _positive("smearing", smearing, labels["smearing"])
        fixed["smearing"] = smearing
    if not any(periodic) and fixed and method not in ("pme", "p3m"):
        name = next(iter(fixed))
        raise ValueError(
            message(
                labels[name],
                "left out for a non-periodic structure with the direct sum (it has "
                "no smearing or k-space parameters; method pme or p3m takes them)",
                f"{fixed[name]!r} with pbc {periodic}",
            )
        )
    kinds = {K_SPACE[name] for name in params}
    if len(kinds) > 1:
        raise ValueError(
            message(
                labels["lr_wavelength"],
                "given without mesh parameters (Ewald has no mesh)",
                f"both {', '.join(labels[n] for n in params)}",
            )
        )
    for name in params:
        if method != "auto" and method not in K_SPACE[name]:
            allowed = " or ".join(K_SPACE[name])
            raise ValueError(
                message(
                    labels[name],
                    f"given only with {labels['method']} {allowed}",
                    f"{labels['method']} {method}",
                )
            )


# float32 keeps about 7 digits: the largest force summands, q²/d² for the
# closest pair distance d or the smearing (the k-space part), are rounded at
# about this relative level (tests/test_front_door_property.py measures the
# errors of float32 runs against a float64 NumPy Ewald sum)
FLOAT32_ROUNDING = 2e-6


def rounding_error(
    charges: torch.Tensor, parameters: engine.Parameters, evaluation, dtype
) -> float:
    """The RMS force error that float32 rounding adds (prefactor 1; 0 in float64).

    ``FLOAT32_ROUNDING · mean(q²) / d²`` with ``d`` the smaller of the closest
    pair distance and the smearing: the error estimate of the parameters covers
    the method, not the arithmetic, and in float32 the arithmetic can dominate.
    """
    if dtype != torch.float32:
        return 0.0
    scale = min(evaluation.closest, parameters.smearing or math.inf)
    if not math.isfinite(scale) or scale <= 0.0:
        return 0.0
    mean_square = float(torch.mean(charges.detach().double() ** 2))
    return FLOAT32_ROUNDING * mean_square / scale**2


def reported_error(
    parameters: engine.Parameters, prefactor: float, rounding: float = 0.0
) -> Optional[float]:
    """The engine's error estimate plus the ``rounding`` error (prefactor 1), in
    the units of the output forces (``None``: exact direct sum, or no estimate)."""
    error = getattr(parameters, "error", None)
    return None if error is None else (float(error) + rounding) * abs(prefactor)


def warn_rounding(rounding: float, accuracy: float, prefactor: float) -> None:
    """Warn when float32 rounding alone exceeds the requested ``accuracy`` (both
    with prefactor 1)."""
    if rounding > accuracy:
        warnings.warn(
            f"float32 rounding limits the RMS force error to about "
            f"{rounding * abs(prefactor):.2g}, {rounding / accuracy:.2g} times the "
            "requested accuracy: use float64 (dtype) or loosen accuracy",
            UserWarning,
            stacklevel=3,
        )


_NAMES = ("cutoff", "smearing", "lr_wavelength", "mesh_spacing", "interpolation_nodes")


def translate_advice(text: str, labels: Dict[str, str]) -> str:
    """The engine's advice with the user's option names (``--mesh-spacing``)."""
    for name in (*_NAMES, "accuracy"):
        if name in labels:
            text = re.sub(rf"\b{name}\b", labels[name], text)
    return text


# keyword arguments of ASE's ``Calculator`` that the ASE calculator passes on
ASE_KEYWORDS = ("restart", "ignore_bad_restart_file", "label", "atoms", "directory")


def check_arguments(
    kwargs, method, accuracy, dtype, retune_threshold, charges, qeq, total_charge
) -> None:
    """The arguments of :class:`torchpme.ase.TorchPMECalculator`, before any work."""
    for name, value in kwargs.items():
        if name not in ASE_KEYWORDS:
            hint = (
                f" (a k-space parameter: params={{'{name}': {value!r}}})"
                if name in ("lr_wavelength", "mesh_spacing", "interpolation_nodes")
                else ""
            )
            raise TypeError(
                message(
                    "**kwargs",
                    f"ASE Calculator keywords {list(ASE_KEYWORDS)}{hint}",
                    f"the unknown keyword {name}={value!r}",
                )
            )
    check_choice("method", method, engine.METHODS)
    if accuracy is not None and not (
        isinstance(accuracy, (int, float))
        and not isinstance(accuracy, bool)
        and 0.0 < accuracy < float("inf")
    ):
        raise ValueError(message("accuracy", "a finite number > 0", f"{accuracy}"))
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(message("dtype", "torch.float32 or torch.float64", f"{dtype}"))
    if not retune_threshold >= 0.0:
        raise ValueError(
            message("retune_threshold", "a number >= 0", f"{retune_threshold}")
        )
    if qeq is not None:
        check_table(qeq, "qeq")
        if charges is not None:
            raise ValueError(
                message("charges", "None with qeq (qeq solves for them)",
                        "charges as well")
            )  # fmt: skip
    if not math.isfinite(total_charge):
        raise ValueError(message("total_charge", "finite", f"{total_charge}"))


class Result:
    """A run on one structure: parameters, evaluation, timings, accuracy."""

    def __init__(
        self, parameters, evaluation, timings, method_requested, error, charges,
        qeq_iterations=None,
    ):  # fmt: skip
        self.parameters = parameters
        self.evaluation = evaluation
        self.timings = timings
        self.method_requested = method_requested
        #: error estimate of what ran, in the units of the output forces
        self.error = error
        #: ``(N,)`` the charges (given, or equilibrated)
        self.charges = charges
        #: conjugate-gradient iterations of charge equilibration (None without)
        self.qeq_iterations = qeq_iterations


def compute(
    atoms,
    charges,
    method: str = "auto",
    accuracy: float = 1e-4,
    cutoff: Optional[float] = None,
    units: str = "eV_A",
    dtype=None,
    device=None,
    smearing: Optional[float] = None,
    params: Optional[dict] = None,
    steps=None,
    qeq: Optional[dict] = None,
    total_charge: float = 0.0,
) -> Result:
    """Energy, forces and stress of an ``ase.Atoms`` with per-atom ``charges``,
    or with the charges of charge equilibration when ``qeq`` is a
    ``{symbol: (χ, J, σ)}`` table (``charges`` is then ignored; see
    :mod:`torchpme._cli.qeq`).

    ``accuracy`` is the RMS force error target in the units of ``units``
    (energy unit per Å); the result's ``error`` is the estimate of what ran, in
    the same units.
    """
    dtype = dtype or torch.float64
    device = device or torch.device("cpu")
    periodic = [bool(p) for p in atoms.pbc]
    positions = torch.tensor(np.asarray(atoms.positions), dtype=dtype, device=device)
    cell = torch.tensor(np.asarray(atoms.cell[:]), dtype=dtype, device=device)
    if qeq is not None:
        arrays = qeq_arrays(atoms.get_chemical_symbols(), qeq)
        charges = np.ones(len(atoms))  # tuned for unit charges
        cutoff = gaussian_cutoff(arrays[2], cutoff, cell, len(atoms), "--cutoff")
    q = torch.tensor(np.asarray(charges), dtype=dtype, device=device).reshape(-1, 1)
    for name, tensor in (("positions", positions), ("charges", q), ("cell", cell)):
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(message(name, "finite", "NaN or infinite entries"))
    params = dict(params or {})
    engine.check_periodic(periodic, cell, positions, method, params)
    prefactor = engine.unit_prefactor(units)
    concrete = engine.resolve_method(
        method,
        len(atoms),
        periodic,
        params=params,
        cell=cell,
        cutoff=cutoff,
        accuracy=accuracy / prefactor,
    )
    timings = {}
    if steps is not None:
        steps.start("tuning")
    start = time.perf_counter()
    parameters = engine.choose_parameters(
        concrete,
        q,
        cell,
        positions,
        periodic,
        accuracy / prefactor,
        cutoff,
        smearing,
        params,
    )
    timings["tuning"] = time.perf_counter() - start
    if steps is not None:
        steps.finish()
        steps.start("energy, forces, stress")
    start = time.perf_counter()
    calculator = engine.build_calculator(parameters, prefactor, dtype, device)
    iterations = None
    if qeq is None:
        evaluation = engine.evaluate(
            calculator, parameters, q, cell, positions, periodic
        )
    else:
        solved = evaluate_qeq(
            calculator, parameters, arrays, total_charge, cell, positions, periodic
        )
        evaluation, charges, iterations = solved
        q = torch.tensor(charges, dtype=dtype, device=device).reshape(-1, 1)
    timings["evaluation"] = time.perf_counter() - start
    if steps is not None:
        steps.finish()
    rounding = rounding_error(q, parameters, evaluation, dtype)
    warn_rounding(rounding, accuracy / prefactor, prefactor)
    error = reported_error(parameters, prefactor, rounding)
    return Result(
        parameters, evaluation, timings, method, error, np.asarray(charges), iterations
    )


# the Madelung check runs at this accuracy (e²/Å², or the requested one if tighter)
MADELUNG_ACCURACY = 1e-7
# and with this real-space cutoff (Å), which keeps the reciprocal-space grid coarse
MADELUNG_CUTOFF = 9.0


def madelung_check(method: str, accuracy: float, dtype, device) -> dict:
    """The rock-salt Madelung constant from a perfect 64-ion NaCl supercell.

    ``M = −E r0 / (N/2)`` in Gaussian units with nearest-neighbour distance
    ``r0``; the reference is 1.747564594633 (Johnson & Templeton, 1961). The
    parameters are tuned for ``min(accuracy, 1e-7)`` (``accuracy`` in e²/Å²)
    with a 9 Å cutoff, which reproduces ``M`` to about 1e-7 in float64; the
    check passes within 1e-6 (float64) or 1e-4 (float32 rounding).
    """
    from .structures import MADELUNG_ROCKSALT, NACL_LATTICE, rocksalt

    atoms = rocksalt(repeat=2)
    with warnings.catch_warnings():
        # the tuner may find its error estimate above 1e-7 (PME); the check
        # measures the actual error against the known constant instead
        warnings.simplefilter("ignore", UserWarning)
        result = compute(
            atoms,
            atoms.get_initial_charges(),
            method=method,
            accuracy=min(accuracy, MADELUNG_ACCURACY),
            cutoff=MADELUNG_CUTOFF,
            units="gaussian",
            dtype=dtype,
            device=device,
        )
    r0 = NACL_LATTICE / 2.0
    value = -float(result.evaluation.energy) * r0 / (len(atoms) / 2)
    error = abs(value - MADELUNG_ROCKSALT)
    tolerance = 1e-6 if dtype.itemsize == 8 else 1e-4
    return {
        "computed": value,
        "reference": MADELUNG_ROCKSALT,
        "error": error,
        "tolerance": tolerance,
        "passed": error <= tolerance,
        "method": result.parameters.method,
    }
