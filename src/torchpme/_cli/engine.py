"""From a structure to energy, forces and stress: the engine of the CLI and ASE front ends.

The steps, each a plain function so the front ends share them:

1. :func:`resolve_method` turns the user's ``method`` string into a concrete
   method once (``"direct"``, ``"ewald"``, ``"pme"`` or ``"p3m"``);
2. :func:`choose_parameters` picks the real-space cutoff and, through
   :mod:`torchpme.tuning`, the smearing and reciprocal-space parameters;
3. :func:`build_calculator` makes the calculator;
4. :func:`evaluate` computes ``E = Σ_i q_i V_i``, forces ``F = −∂E/∂r`` and the
   stress ``σ = (1/V) ∂E/∂ε`` (ASE's sign convention: positive when the system
   pulls inwards), by differentiating through a homogeneous strain ``ε``
   applied to positions and cell, ``r → r (1 + ε)``, ``A → A (1 + ε)``.

Boundary conditions:

* periodic on all three axes: Ewald, PME or P3M with a neighbour list;
* periodic on two axes (a slab): the same methods with the cell's third (free)
  vector as a vacuum gap and the 2-D slab correction of the Coulomb potential
  (Yeh & Berkowitz); the free axis must be a Cartesian axis, the gap should be
  at least as thick as the slab, and the stress is not defined;
* no periodic axis: the bare Coulomb sum over all pairs (O(N²), exact);
* periodic on one axis only: not supported (a clear error).
"""

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from .._core.validation import message
from ..neighbors import compute_neighbors, pair_distances

__all__ = [
    "METHODS",
    "UNITS",
    "Evaluation",
    "Parameters",
    "build_calculator",
    "check_periodic",
    "choose_parameters",
    "default_cutoff",
    "evaluate",
    "grid_bounds",
    "resolve_method",
    "unit_prefactor",
]

METHODS = ["auto", "ewald", "pme", "p3m"]

# name -> (prefactor attribute in torchpme.prefactors or None for 1, energy unit)
UNITS: Dict[str, Any] = {
    "eV_A": ("eV_A", "eV"),
    "gaussian": (None, "e²/Å"),
    "kcalmol_A": ("kcalmol_A", "kcal/mol"),
    "kJmol": ("kJmol", "kJ/mol"),
}

# Ewald costs O(N²) (with tuned parameters about O(N^1.5)), the mesh methods
# O(N log N): above this many atoms "auto" picks P3M
AUTO_MESH_ABOVE = 2000


def unit_prefactor(units: str) -> float:
    """Coulomb prefactor ``1/(4πε₀)`` for charges in e and lengths in Å."""
    if units not in UNITS:
        raise ValueError(message("units", f"one of {list(UNITS)}", f"'{units}'"))
    name = UNITS[units][0]
    if name is None:
        return 1.0
    from .. import prefactors

    return float(getattr(prefactors, name))


def check_periodic(periodic: List[bool], cell: torch.Tensor) -> None:
    """Reject boundary conditions the engine cannot treat, with one-line errors."""
    count = sum(periodic)
    if count == 1:
        raise ValueError(
            message(
                "pbc",
                "periodic on 0, 2 (slab) or 3 axes",
                f"periodic on one axis only {periodic}",
            )
        )
    if count == 0:
        return
    lengths = torch.linalg.norm(cell.detach(), dim=1)
    volume = float(torch.abs(torch.linalg.det(cell.detach().to(torch.float64))))
    if volume <= 1e-8 * float(lengths.prod()) or not volume > 0.0:
        raise ValueError(
            message(
                "cell",
                "three non-zero, independent lattice vectors for a periodic method "
                "(a slab needs a vacuum vector too)",
                f"cell {cell.detach().tolist()} (volume {volume:.3g})",
            )
        )
    if count == 2:
        free = periodic.index(False)
        row = cell.detach()[free]
        others = [abs(float(row[d])) for d in range(3) if d != free]
        if max(others) > 1e-8 * float(torch.linalg.norm(row)):
            raise ValueError(
                message(
                    "cell",
                    f"the free (non-periodic) lattice vector {free} along Cartesian "
                    f"axis {free} for the slab correction",
                    f"{row.tolist()}",
                )
            )


def resolve_method(method: str, n_atoms: int, periodic: List[bool]) -> str:
    """The concrete method for a user's choice: ``direct`` for open boundaries,
    Ewald for small periodic systems and P3M above ``AUTO_MESH_ABOVE`` atoms."""
    if method not in METHODS:
        raise ValueError(message("method", f"one of {METHODS}", f"'{method}'"))
    if not any(periodic):
        if method != "auto":
            raise ValueError(
                message(
                    "method",
                    "'auto' for a non-periodic structure (periodic methods need a "
                    "structure with pbc and a cell)",
                    f"'{method}' with pbc {periodic}",
                )
            )
        return "direct"
    if method == "auto":
        return "ewald" if n_atoms <= AUTO_MESH_ABOVE else "p3m"
    return method


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
    ``interpolation_nodes``)."""

    method: str
    cutoff: Optional[float] = None
    smearing: Optional[float] = None
    params: Dict[str, Any] = field(default_factory=dict)
    tuning_seconds: float = 0.0

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


_PARAMETER_NAMES = {
    "ewald": ["lr_wavelength"],
    "pme": ["mesh_spacing", "interpolation_nodes"],
    "p3m": ["mesh_spacing", "interpolation_nodes"],
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

    Anything given is kept. Missing k-space parameters are found by
    :func:`torchpme.tuning.tune_ewald` / ``tune_pme`` / ``tune_p3m`` (which time
    the candidates) for the requested ``accuracy``, the RMS force error in
    Gaussian units (e²/Å², see :mod:`torchpme.tuning`); when they are all given,
    only the smearing is derived from the accuracy and the cutoff
    (:meth:`torchpme.tuning.tuner.TunerBase.estimate_smearing`), without timing.

    Args:
        method: ``"direct"``, ``"ewald"``, ``"pme"`` or ``"p3m"``.
        charges: ``(N, 1)``; cell ``(3, 3)``; positions ``(N, 3)``.
        periodic: 3 bools.
        accuracy: target accuracy of the tuner (> 0).
        cutoff: real-space cutoff; default :func:`default_cutoff`.
        smearing: Gaussian smearing; tuned when ``None``.
        params: k-space parameters; tuned when missing.

    Returns:
        :class:`Parameters`.
    """
    if method == "direct":
        return Parameters(method="direct")
    if not (accuracy > 0.0 and math.isfinite(accuracy)):
        raise ValueError(message("accuracy", "a finite number > 0", f"{accuracy}"))
    if cutoff is None:
        cutoff = default_cutoff(cell, positions.shape[0])
    elif not (cutoff > 0.0 and math.isfinite(cutoff)):
        raise ValueError(message("cutoff", "a finite number > 0", f"{cutoff}"))
    given = dict(params or {})
    missing = [name for name in _PARAMETER_NAMES[method] if name not in given]
    if smearing is not None and not missing:
        return Parameters(method, float(cutoff), float(smearing), given)
    start = time.perf_counter()
    from ..tuning.tuner import TunerBase

    estimate = TunerBase(charges, cell, positions, float(cutoff), _calculator(method))
    estimated_smearing = estimate.estimate_smearing(float(accuracy))
    if not missing:
        # k-space fixed by the user: only the smearing (real-space error), no timing
        elapsed = time.perf_counter() - start
        chosen = estimated_smearing if smearing is None else float(smearing)
        return Parameters(method, float(cutoff), chosen, given, elapsed)
    indices, distances = compute_neighbors(positions, cell, cutoff, periodic)
    tuned_smearing, tuned, _ = _tuner(method)(
        charges,
        cell,
        positions,
        float(cutoff),
        neighbor_indices=indices,
        neighbor_distances=distances.detach(),
        accuracy=float(accuracy),
        **grid_bounds(method, estimated_smearing, cell),
    )
    tuned.update(given)
    elapsed = time.perf_counter() - start
    chosen = float(tuned_smearing) if smearing is None else float(smearing)
    return Parameters(method, float(cutoff), chosen, tuned, elapsed)


def grid_bounds(method: str, smearing: float, cell: torch.Tensor) -> Dict[str, int]:
    """Search ranges for the tuner, scaled by the smearing instead of fixed.

    The long-range part of a Gaussian of width ``σ`` carries no information on
    scales much finer than ``σ``, so the grids need to reach (and need not go
    beyond) Ewald wavelengths ``λ = L_min/n ≈ σ/2`` and mesh spacings
    ``h = 2 L_min/(2^e − 1) ≈ σ/6`` (finer than the tuner ever picks for
    accuracies down to 1e-8). The Ewald default ``n ≤ 14`` stops short of that
    in large cells; the mesh default ``e ≤ 7`` times needlessly fine meshes in
    small ones (it is kept as the upper bound: 128 points per axis).
    """
    shortest = float(torch.linalg.norm(cell.detach(), dim=1).min())
    if method == "ewald":
        return {"ns_hi": max(14, math.ceil(2.0 * shortest / smearing) + 1)}
    finest = math.ceil(math.log2(12.0 * shortest / smearing + 1.0))
    return {"mesh_hi": min(7, max(3, finest))}


def _calculator(method: str):
    from .. import calculators

    return {
        "ewald": calculators.EwaldCalculator,
        "pme": calculators.PMECalculator,
        "p3m": calculators.P3MCalculator,
    }[method]


def build_calculator(
    parameters: Parameters,
    prefactor: float,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> torch.nn.Module:
    """The calculator for ``parameters``, with a Coulomb potential of ``prefactor``."""
    from ..calculators import Calculator
    from ..potentials import CoulombPotential

    if parameters.method == "direct":
        calculator = Calculator(CoulombPotential(prefactor=prefactor))
    else:
        potential = CoulombPotential(smearing=parameters.smearing, prefactor=prefactor)
        calculator = _calculator(parameters.method)(potential, **parameters.params)
    return calculator.to(dtype=dtype, device=device)


@dataclass
class Evaluation:
    """Results of :func:`evaluate`, as float64 CPU tensors (units of the
    prefactor: energy, energy/length, energy/length³, energy/charge)."""

    energy: torch.Tensor
    forces: torch.Tensor
    stress: Optional[torch.Tensor]
    potentials: torch.Tensor
    energies: torch.Tensor
    n_pairs: int


def _all_pairs(n_atoms: int, device: torch.device) -> torch.Tensor:
    pairs = torch.triu_indices(n_atoms, n_atoms, offset=1, device=device)
    return pairs.t().contiguous()


def evaluate(
    calculator: torch.nn.Module,
    parameters: Parameters,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: List[bool],
    stress: bool = True,
) -> Evaluation:
    """Energy ``E = Σ_i q_i V_i``, forces, stress and per-atom potentials.

    The neighbour list is rebuilt from the positions (all pairs for the direct
    method) and its distances are recomputed in torch, so that gradients reach
    the positions and, through the strain ``ε``, the cell:

    .. math::

        F_i = -\\frac{∂E}{∂r_i}, \\qquad
        σ = \\frac{1}{V} \\frac{∂E(r(1+ε), A(1+ε))}{∂ε}\\Big|_{ε=0}.

    Args:
        calculator: from :func:`build_calculator`.
        parameters: the :class:`Parameters` it was built with (for the cutoff).
        charges: ``(N, 1)``; cell ``(3, 3)``; positions ``(N, 3)``, all of one
            dtype and device.
        periodic: 3 bools.
        stress: compute the stress (3-D periodic systems only).

    Returns:
        :class:`Evaluation` (stress ``None`` when not computed).
    """
    want_stress = stress and all(periodic)
    positions = positions.detach().requires_grad_(True)
    strain = torch.zeros(
        3, 3, dtype=positions.dtype, device=positions.device, requires_grad=want_stress
    )
    deformation = torch.eye(3, dtype=positions.dtype, device=positions.device) + strain
    strained_positions = positions @ deformation
    strained_cell = cell.detach() @ deformation
    if parameters.method == "direct":
        indices = _all_pairs(positions.shape[0], positions.device)
        shifts = torch.zeros(
            indices.shape[0], 3, dtype=torch.int64, device=positions.device
        )
        periodic_tensor = None
    else:
        indices, _, shifts = compute_neighbors(
            positions.detach(),
            cell.detach(),
            parameters.cutoff,
            periodic,
            return_shifts=True,
        )
        periodic_tensor = (
            None
            if all(periodic)
            else torch.tensor(periodic, dtype=torch.bool, device=positions.device)
        )
    distances = pair_distances(strained_positions, strained_cell, indices, shifts)
    potentials = calculator(
        charges,
        strained_cell,
        strained_positions,
        indices,
        distances,
        periodic_tensor,
    )
    energies = (charges * potentials).sum(dim=1)
    energy = energies.sum()
    inputs = [positions, strain] if want_stress else [positions]
    gradients = torch.autograd.grad(energy, inputs)
    result_stress = None
    if want_stress:
        volume = torch.abs(torch.linalg.det(cell.detach()))
        virial = gradients[1]
        result_stress = (0.5 * (virial + virial.t()) / volume).detach()
        result_stress = result_stress.to(torch.float64).cpu()
    return Evaluation(
        energy=energy.detach().to(torch.float64).cpu(),
        forces=(-gradients[0]).detach().to(torch.float64).cpu(),
        stress=result_stress,
        potentials=potentials.detach()[:, 0].to(torch.float64).cpu(),
        energies=energies.detach().to(torch.float64).cpu(),
        n_pairs=int(indices.shape[0]),
    )
