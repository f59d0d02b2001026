"""Charge equilibration at the front door: per-element ``χ, J, σ`` to charges,
energy, forces and stress.

The charges minimise (:func:`torchpme.qeq.equilibrate`)

.. math::

    E(q) = \\sum_i χ_i q_i + \\tfrac12 \\sum_i J_i q_i² + E_C(q)
    \\quad\\text{subject to}\\quad \\sum_i q_i = Q,

with ``E_C`` the Coulomb energy of Gaussian charges of widths ``σ_i`` (their own
energy included). ``χ`` is in the energy unit of the prefactor per e, ``J`` in
that unit per e², ``σ`` in Å. At the minimum ``∂E/∂q`` is a multiple of the
constraint, which every change of the charges keeps, so the forces and the stress
are the partial derivatives at fixed charges (no adjoint solve).

The Gaussians' short-range difference from point charges is summed over the
calculator's pairs, so its cutoff must reach ``GAUSSIAN_REACH · σ_max``; the
parameters are tuned for unit charges (the error estimates grow with ``Σq²``,
which equilibrated charges of magnitude below one keep below it).
"""

import json
import math
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from .._core.validation import count_periodic, message
from ..gaussian import GaussianCharges
from ..qeq import equilibrate
from .geometry import Evaluation, strained_geometry
from .parameters import Parameters, default_cutoff

__all__ = [
    "GAUSSIAN_REACH",
    "Equilibrium",
    "evaluate_qeq",
    "gaussian_cutoff",
    "parse_qeq",
    "qeq_arrays",
]

#: the cutoff reaches this many ``σ_max``: the Gaussian pair term is cut where
#: ``erfc(r / 2σ_max) ≤ erfc(4) ≈ 1.5e-8`` of its value at contact
GAUSSIAN_REACH = 8.0

Table = Dict[str, Tuple[float, float, float]]


class Equilibrium(NamedTuple):
    """What :func:`evaluate_qeq` returns."""

    evaluation: Evaluation
    #: ``(N,)`` equilibrated charges (float64, CPU)
    charges: np.ndarray
    #: conjugate-gradient iterations of the solve
    iterations: int


def parse_qeq(text: str, argument: str = "--qeq") -> Table:
    """``"Na=χ:J:σ,Cl=χ:J:σ"``, or the path of a JSON file ``{"Na": [χ, J, σ]}``."""
    form = "'Na=chi:J:sigma,Cl=...' or a JSON file {\"Na\": [chi, J, sigma]}"
    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as handle:
                raw = json.load(handle)
            table = {str(k): tuple(float(x) for x in v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(message(argument, form, f"'{text}' ({error})")) from None
    else:
        table = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            symbol, sep, values = item.partition("=")
            try:
                if not sep or not symbol.strip():
                    raise ValueError
                table[symbol.strip()] = tuple(float(x) for x in values.split(":"))
            except ValueError:
                raise ValueError(message(argument, form, f"'{text}'")) from None
    check_table(table, argument)
    return table


def check_table(table, argument: str) -> None:
    """Three finite numbers per element, ``J > 0`` and ``σ > 0``."""
    if not isinstance(table, dict) or not table:
        raise ValueError(
            message(argument, "a {symbol: (chi, J, sigma)} table", f"{table!r}")
        )
    for symbol, values in table.items():
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if len(values) != 3 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in values
        ):
            raise ValueError(
                message(argument, "three finite numbers (chi, J, sigma) per element",
                        f"{symbol}: {values!r}")
            )  # fmt: skip
        if not (values[1] > 0 and values[2] > 0):
            raise ValueError(
                message(argument, "a hardness J > 0 and a width sigma > 0",
                        f"{symbol}: J = {values[1]:g}, sigma = {values[2]:g}")
            )  # fmt: skip


def qeq_arrays(symbols: List[str], table: Table, argument: str = "--qeq"):
    """Per-atom ``(χ, J, σ)`` arrays ``(N,)`` each; every element needs an entry."""
    missing = sorted({s for s in symbols if s not in table})
    if missing:
        raise ValueError(
            message(argument, "chi, J, sigma for every element",
                    f"none for {', '.join(missing)}")
        )  # fmt: skip
    values = np.array([table[s] for s in symbols], dtype=float).reshape(-1, 3)
    return values[:, 0], values[:, 1], values[:, 2]


def gaussian_cutoff(
    widths: np.ndarray,
    cutoff: Optional[float],
    cell: torch.Tensor,
    n_atoms: int,
    argument: str = "cutoff",
) -> float:
    """The real-space cutoff: ``cutoff`` if given (refused below the reach of
    the widths), else the larger of :func:`default_cutoff` and that reach."""
    reach = GAUSSIAN_REACH * float(np.max(widths))
    if cutoff is None:
        return max(default_cutoff(cell, n_atoms), reach)
    if cutoff < reach:
        raise ValueError(
            message(argument, f">= {GAUSSIAN_REACH:g} times the largest Gaussian "
                    f"width ({reach:.4g} Å)", f"{cutoff:g}")
        )  # fmt: skip
    return cutoff


def evaluate_qeq(
    calculator: torch.nn.Module,
    parameters: Parameters,
    arrays,
    total_charge: float,
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: List[bool],
    stress: bool = True,
    initial: Optional[np.ndarray] = None,
) -> Equilibrium:
    """Equilibrated charges, then energy, forces, stress and per-atom potentials.

    Args:
        calculator, parameters: from :func:`~torchpme._cli.engine.build_calculator`
            (a Coulomb potential with the prefactor of the units).
        arrays: per-atom ``(χ, J, σ)`` (:func:`qeq_arrays`).
        total_charge: ``Q``.
        cell, positions, periodic: the structure.
        stress: compute the stress (3-D periodic systems only).
        initial: charges to start the solve from (the previous MD step's).

    Returns:
        :class:`Equilibrium`; the evaluation's ``potentials`` are ``V_i`` with
        ``E_C = Σ q_i V_i`` (the Gaussians' own energy included) and its
        ``energies`` ``χ_i q_i + ½ J_i q_i² + q_i V_i``.
    """
    like = {"dtype": positions.dtype, "device": positions.device}
    chi, hardness, widths = (torch.tensor(a, **like) for a in arrays)
    g = strained_geometry(parameters, cell, positions, periodic, stress)
    flags = None if all(periodic) else torch.tensor(periodic, device=positions.device)
    start = None if initial is None else torch.tensor(initial, **like)
    with torch.no_grad():
        solved = equilibrate(
            calculator, chi, hardness, widths, g.cell.detach(),
            g.positions.detach(), g.indices, g.distances.detach(), total_charge,
            periodic=flags, initial=start,
        )  # fmt: skip
    q = solved.charges.unsqueeze(1)
    potentials = GaussianCharges(calculator, self_energy=True).potentials(
        q, widths, g.cell, g.positions, g.indices, g.distances, flags, None,
        count_periodic(flags),
    )[:, 0]  # fmt: skip
    charges = q[:, 0]
    energies = chi * charges + 0.5 * hardness * charges**2 + charges * potentials
    energy = energies.sum()
    gradients = torch.autograd.grad(energy, g.leaves())
    evaluation = g.evaluation(energy, gradients, potentials, energies)
    return Equilibrium(
        evaluation, charges.to(torch.float64).cpu().numpy(), solved.iterations
    )
