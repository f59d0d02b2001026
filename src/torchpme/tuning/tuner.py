"""The machinery shared by the tuners: error-bound modules, grid search and timing.

**What "accuracy" means.** Every tuner takes ``accuracy``, a target for the RMS
error of the forces over the atoms,

.. math::

    ΔF = \\Big( \\frac{1}{N} Σ_i |F_i − F_i^\\text{exact}|^2 \\Big)^{1/2},
    \\qquad F_i = −∂E/∂r_i,\\quad E = Σ_i q_i V_i,

as in Kolafa & Perram (1992), doi:10.1080/08927029208049126: Gaussian units with
a unit prefactor, i.e. charge²/length² (e²/Å² for charges in e and lengths in
Å); the potential's ``prefactor`` (e.g. :data:`torchpme.prefactors.eV_A`)
multiplies the actual error. It is the error of the whole calculation,
real-space truncation at the cutoff plus the reciprocal-space approximation,
measured against the exact sum: 3-D periodic, or for a slab (``periodic`` with
one non-periodic direction) the 3-D sum with the Yeh–Berkowitz correction the
calculators add. The RMS error of the per-atom potentials ``V_i`` (charge/length)
is held to the same number; it rarely decides (in the tests, lengths in Å, it is
3–40 % of the force error), except for very few atoms, whose forces may vanish
by symmetry while their energy still needs the reciprocal-space sum.

**How parameters are chosen.** The smearing follows from the cutoff
(:meth:`TunerBase.estimate_smearing`: Kolafa–Perram real-space error
``accuracy/2``); each candidate of the reciprocal-space grid gets an estimate of
the total error; candidates that cannot win (above the accuracy, or needing at
least as much of every resource as another accepted one: k-vectors; mesh points
and interpolation nodes) are dropped before anything is timed; of the rest, the
cheapest few by a rough cost model are timed and the fastest is returned.

**Which error formulas.** The compatible error-bound classes
(:class:`~torchpme.tuning.ewald.EwaldErrorBounds`,
:class:`~torchpme.tuning.pme.PMEErrorBounds`,
:class:`~torchpme.tuning.p3m.P3MErrorBounds`) reproduce torch-pme 0.5's numbers,
but they are optimistic for these calculators: Ewald keeps k-vectors up to about
``π/λ``, not the ``2π/λ`` its formula assumes (measured errors exceed it by
orders of magnitude); forces by automatic differentiation of the mesh
interpolation converge one order slower than the PME formula assumes, and every
mesh method adds a self-force (measured errors up to ~60× the PME bound and
~20× the P3M bound). The tuners select with ``EwaldErrorEstimate``,
``PMEErrorEstimate`` and ``P3MErrorEstimate`` instead: the random-charge RMS
errors (forces and potentials) of each pipeline as implemented (:mod:`torchpme.tuning._estimates`),
which matches measured errors within about 30 % for disordered systems (and
overestimates them for crystals), multiplied by the safety factor
:data:`SAFETY`. The Kolafa–Perram real-space term assumes a uniform pair
density; for a crystal with a coordination shell at the cutoff it underestimates
(by 1.7× on rattled rock salt with the cutoff at its second shell, the worst
cutoff in a scan of 3–6 Å), which the factor 2 of ``accuracy/2`` absorbs. Over
Ewald, PME and P3M, accuracies 1e-2 … 1e-6 and the systems of
``tests/test_tuning_accuracy.py``, measured force errors are 0.3–0.96 of the
accuracy (0.96: that rock-salt case) and potential errors at most 0.33 of it.

**Slabs and clusters.** Every estimate assumes the atoms spread over the whole
cell; with vacuum each atom's partners are denser than ``N/V`` and the errors
larger (the real-space force error 1.8× the Kolafa–Perram value on a slab of 64
ions filling 8 Å of a 36 Å cell: tuned PME at 1e-3 measured 1.02e-3). The
smearing and the estimates therefore use the density of the occupied region
wherever the density enters (pair terms, not self terms), found from the largest
empty gap along each lattice vector (:mod:`torchpme.tuning._density`); bulk
systems are unaffected. On that slab and on a cluster in vacuum
(``tests/test_tuning_slab.py``) measured force errors are then about 0.5–0.65 of
the accuracy.
"""

import math
import time
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .._core.validation import (
    check_choice,
    check_finite,
    check_index_range,
    check_invertible,
    message,
)
from .._utils import _validate_parameters
from ..calculators import Calculator
from ..potentials import InversePowerLawPotential
from . import _density

__all__ = [
    "SAFETY",
    "GridSearchTuner",
    "TunerBase",
    "TuningErrorBounds",
    "TuningTimings",
    "tune_cutoff",
]

#: Factor between the estimated RMS force error and the accuracy it must reach:
#: a candidate is accepted when ``SAFETY · estimate`` is below the accuracy.
SAFETY = 1.5


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


def check_cutoff(cutoff: Any) -> float:
    """Raise unless ``cutoff`` is a real number, finite and > 0."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)):
        raise TypeError(
            message("cutoff", "a number", f"{type(cutoff).__name__} {cutoff!r}")
        )
    if not (cutoff > 0.0 and math.isfinite(cutoff)):
        raise ValueError(message("cutoff", "a finite number > 0", f"{cutoff}"))
    return float(cutoff)


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


class TuningErrorBounds(torch.nn.Module):
    """Base class of the error bounds: a module holding a system, called with the
    parameters to rate.

    ``forward(*args, **kwargs)`` returns ``error(*args, **kwargs)``; subclasses
    implement :meth:`error` with their own positional order.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
    """

    def __init__(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ):
        super().__init__()
        self.register_buffer("_charges", charges)
        self.register_buffer("_cell", cell)
        self.register_buffer("_positions", positions)

    def forward(self, *args, **kwargs):
        """Same as :meth:`error`."""
        return self.error(*args, **kwargs)

    def error(self, *args, **kwargs) -> torch.Tensor:
        """The error bound for the given parameters (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `error`")


class TunerBase:
    """Common state of the tuners and the smearing estimate.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
        cutoff: real-space cutoff (> 0).
        calculator: the calculator class to tune (e.g. ``PMECalculator``).
        exponent: exponent of the potential; only 1 (Coulomb) is supported.
        full_neighbor_list: whether neighbour lists will be full lists.
        prefactor: the potential's prefactor (used when timing).

    Raises:
        NotImplementedError: for ``exponent != 1`` (checked first).
        ValueError, TypeError: for malformed systems (no atoms, all charges zero,
            non-finite values, singular cell) or a non-positive ``cutoff``.
    """

    def __init__(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        cutoff: float,
        calculator: type,
        exponent: int = 1,
        full_neighbor_list: bool = False,
        prefactor: float = 1.0,
    ):
        cutoff = check_tunable(charges, cell, positions, cutoff, exponent)
        if not (isinstance(calculator, type) and issubclass(calculator, Calculator)):
            raise TypeError(
                message("calculator", "a Calculator subclass", f"{calculator!r}")
            )
        self.charges = charges
        self.cell = cell
        self.positions = positions
        self.cutoff = cutoff
        self.calculator = calculator
        self.exponent = exponent
        self.full_neighbor_list = full_neighbor_list
        self.prefactor = prefactor
        n_atoms = positions.shape[0]
        self._smearing_esti_prefac = (
            2.0 * float(torch.sum(charges.detach() ** 2)) / math.sqrt(n_atoms)
        )

    def tune(self, accuracy: float = 1e-3):
        """Find parameters for ``accuracy`` (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `tune`")

    def estimate_smearing(self, accuracy: float) -> float:
        """The smearing for which the real-space force error is ``accuracy / 2``.

        Solves ``2Q²/√(N r_c V) · exp(−r_c²/2σ²) = accuracy/2`` (Kolafa & Perram,
        1992, doi:10.1080/08927029208049126) for ``σ``:

        .. math::

            σ = r_c \\Big/ \\sqrt{−2 \\ln\\!\\Big(\\frac{\\text{accuracy}}{2}
                \\frac{\\sqrt{N r_c V}}{2Q^2}\\Big)}

        ``V`` is the cell volume for a bulk system. For a slab or a cluster in
        vacuum it is the occupied volume seen by the pairs at the cutoff,
        ``V/D(r_c)`` (:mod:`torchpme.tuning._density`; torch-pme 0.5 always used
        the cell volume, which misses the accuracy there: 1.8× on a slab).

        Args:
            accuracy: target RMS force error (a Python float > 0).

        Returns:
            The smearing ``σ`` (Python float).

        Raises:
            ValueError: for a non-float or non-positive ``accuracy``, or an
                accuracy so loose that any smearing meets it.
        """
        check_accuracy(accuracy)
        cell = self.cell.detach().to("cpu", torch.float64).numpy()
        positions = self.positions.detach().to("cpu", torch.float64).numpy()
        layers = _density.layer_thicknesses(cell, positions)
        volume = abs(float(np.linalg.det(cell)))
        volume /= _density.density_factor(*layers, self.cutoff)
        scale = math.sqrt(self.cutoff * volume) / self._smearing_esti_prefac
        argument = accuracy / 2.0 * scale
        if argument >= 1.0:
            raise ValueError(
                message(
                    "accuracy",
                    f"< {2.0 / scale:.4g} for this system and cutoff (any "
                    "smearing meets a looser one)",
                    f"{accuracy}",
                )
            )
        return self.cutoff / math.sqrt(-2.0 * math.log(argument))

    @staticmethod
    def filter_neighbors(
        cutoff: float, neighbor_indices: torch.Tensor, neighbor_distances: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The pairs closer than ``cutoff`` (strictly): ``(indices, distances)``.

        A neighbour list built once at the largest cutoff serves every smaller one.
        """
        keep = neighbor_distances < cutoff
        return neighbor_indices[keep], neighbor_distances[keep]


class TuningTimings(torch.nn.Module):
    """Wall-clock time of one calculator call (forward, and backward if asked).

    Args:
        charges, cell, positions: the system, as for a calculator.
        neighbor_indices: ``(P, 2)`` pairs.
        neighbor_distances: ``(P,)`` distances.
        n_repeat: timed repetitions (the mean is returned).
        n_warmup: untimed calls first (allocations, caches).
        run_backward: also time the backward pass of ``result.sum()`` with
            respect to positions, cell and charges.
        time_budget: stop repeating once the timed calls add up to this many
            seconds (after at least one); ``None``: always ``n_repeat`` calls.
        workload: ``"sum"`` (the compatible default: backward of
            ``result.sum()`` with positions, cell and charges differentiable) or
            ``"forces"``: the energy ``Σ q_i V_i`` and its gradient with respect to
            the positions and the pair distances, the step of an MD code, which
            the tuners time (it takes the calculators' energy shortcuts; the
            ``"sum"`` backward does not).
    """

    def __init__(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        n_repeat: int = 4,
        n_warmup: int = 4,
        run_backward: Optional[bool] = True,
        *,
        time_budget: Optional[float] = None,
        workload: str = "sum",
    ):
        super().__init__()
        _validate_parameters(
            charges, cell, positions, neighbor_indices, neighbor_distances
        )
        check_choice("workload", workload, ["sum", "forces"])
        if isinstance(n_repeat, bool) or not isinstance(n_repeat, int) or n_repeat < 1:
            raise ValueError(message("n_repeat", "an int >= 1", f"{n_repeat!r}"))
        if isinstance(n_warmup, bool) or not isinstance(n_warmup, int) or n_warmup < 0:
            raise ValueError(message("n_warmup", "an int >= 0", f"{n_warmup!r}"))
        self.charges = charges
        self.cell = cell
        self.positions = positions
        self.n_repeat = n_repeat
        self.n_warmup = n_warmup
        self.run_backward = run_backward
        self.neighbor_indices = neighbor_indices
        self.neighbor_distances = neighbor_distances
        self.time_budget = time_budget
        self.workload = workload

    def _synchronize(self):
        if self.positions.device.type == "cuda":
            torch.cuda.synchronize(self.positions.device)

    def forward(
        self, calculator: torch.nn.Module, give_up_after: Optional[float] = None
    ) -> float:
        """Mean seconds per call of ``calculator`` over ``n_repeat`` repetitions
        (fewer if ``time_budget`` is used up first).

        Args:
            calculator: the calculator to time.
            give_up_after: if the first call alone takes longer than this many
                seconds, stop and return that call's time: the candidate is too
                slow to matter.
        """
        for step in range(self.n_warmup):
            elapsed = self._call(calculator)
            if step == 0 and give_up_after is not None and elapsed > give_up_after:
                return elapsed
        total = 0.0
        for repetition in range(1, self.n_repeat + 1):
            elapsed = self._call(calculator)
            total += elapsed
            if self.n_warmup == 0 and repetition == 1:
                if give_up_after is not None and elapsed > give_up_after:
                    return elapsed
            if self.time_budget is not None and total >= self.time_budget:
                return total / repetition
        return total / self.n_repeat

    def _call(self, calculator: torch.nn.Module) -> float:
        positions = self.positions.clone()
        cell = self.cell.clone()
        charges = self.charges.clone()
        forces = self.workload == "forces"
        distances = self.neighbor_distances
        if self.run_backward:
            positions.requires_grad_(True)
            cell.requires_grad_(not forces)
            charges.requires_grad_(not forces)
            if forces:  # in MD the distances come from the positions
                distances = distances.clone().requires_grad_(True)
        self._synchronize()
        start = time.perf_counter()
        result = calculator.forward(
            positions=positions,
            charges=charges,
            cell=cell,
            neighbor_indices=self.neighbor_indices,
            neighbor_distances=distances,
        )
        value = (charges * result).sum() if forces else result.sum()
        if self.run_backward:
            value.backward(retain_graph=True)
        self._synchronize()
        return time.perf_counter() - start


def pareto_front(costs: Sequence[Tuple[float, ...]]) -> List[int]:
    """Indices of the costs no other one dominates (all components ≤, one <);
    of equal costs the first is kept."""
    front = []
    for i, cost in enumerate(costs):
        dominated = False
        for j, other in enumerate(costs):
            if j == i:
                continue
            no_worse = all(o <= c for o, c in zip(other, cost))
            if no_worse and (tuple(other) != tuple(cost) or j < i):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


class GridSearchTuner(TunerBase):
    """Rate every candidate with the error bound; time only those that can win.

    Nothing is timed before every candidate has been rated. Candidates whose
    error exceeds the accuracy are not timed (timing ``inf``). With ``cost``
    given, only the accepted candidates on the Pareto front of their resource
    tuples remain: one needing at least as much of every resource as another
    accepted one (k-vectors; or mesh points and interpolation nodes) cannot be
    faster. With ``work`` given (a rough scalar cost model), of those only the
    ``max_timed`` cheapest by the model, within ``work_factor`` of the cheapest,
    are timed, cheapest first; a candidate whose warm-up call alone takes
    three times the best mean so far is not timed further.

    Args:
        charges, cell, positions, cutoff, calculator, full_neighbor_list,
            prefactor, exponent: as :class:`TunerBase`.
        error_bounds: a :class:`TuningErrorBounds` instance, called as
            ``error_bounds(smearing=σ, cutoff=r_c, **param)``.
        params: the candidate keyword arguments of ``calculator``.
        neighbor_indices: ``(P, 2)`` pairs of a list with a cutoff ≥ ``cutoff``
            (filtered here to ``cutoff``).
        neighbor_distances: ``(P,)`` their distances.
        n_repeat: timed repetitions per candidate.
        n_warmup: untimed calls per candidate.
        cost: maps a candidate to a tuple of resources, each monotone in run time.
        work: maps a candidate to a rough scalar cost (any unit).
        max_timed: at most this many candidates are timed (with ``work``).
        work_factor: candidates whose ``work`` exceeds the cheapest one's by more
            than this factor are not timed.
        time_budget: seconds of timed calls per candidate after which no more
            repetitions are made (see :class:`TuningTimings`).
    """

    def __init__(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        cutoff: float,
        calculator: type,
        error_bounds: TuningErrorBounds,
        params: List[Dict[str, Any]],
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        full_neighbor_list: bool = False,
        prefactor: float = 1.0,
        exponent: int = 1,
        *,
        n_repeat: int = 4,
        n_warmup: int = 1,
        cost: Optional[Callable[[Dict[str, Any]], Tuple[float, ...]]] = None,
        work: Optional[Callable[[Dict[str, Any]], float]] = None,
        max_timed: int = 3,
        work_factor: float = 4.0,
        time_budget: Optional[float] = 1.0,
    ):
        super().__init__(
            charges=charges,
            cell=cell,
            positions=positions,
            cutoff=cutoff,
            calculator=calculator,
            exponent=exponent,
            full_neighbor_list=full_neighbor_list,
            prefactor=prefactor,
        )
        _validate_parameters(
            charges, cell, positions, neighbor_indices, neighbor_distances
        )
        # the tuners are a front door: values are always checked
        check_index_range("neighbor_indices", neighbor_indices, positions.shape[0])
        check_finite("neighbor_distances", neighbor_distances)
        if not isinstance(error_bounds, TuningErrorBounds):
            raise TypeError(
                message(
                    "error_bounds",
                    "a TuningErrorBounds instance",
                    f"{type(error_bounds).__name__}",
                )
            )
        if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
            raise TypeError(message("params", "a list of dicts", f"{params!r}"))
        if len(params) == 0:
            raise ValueError(message("params", "at least one candidate", "[]"))
        self.error_bounds = error_bounds
        self.params = params
        self._cost = cost
        self._work = work
        self.max_timed = max_timed
        self.work_factor = work_factor
        indices, distances = self.filter_neighbors(
            self.cutoff, neighbor_indices, neighbor_distances
        )
        self.time_func = TuningTimings(
            charges,
            cell,
            positions,
            indices,
            distances,
            n_repeat=n_repeat,
            n_warmup=n_warmup,
            run_backward=True,
            time_budget=time_budget,
            # the step the parameters are tuned for: energy and forces (the sum
            # of the potentials with every input differentiable, as in the
            # original, times a backward path users rarely run)
            workload="forces",
        )

    def tune(self, accuracy: float = 1e-3) -> Tuple[List[float], List[float]]:
        """Errors of all candidates and timings of those that can win.

        Args:
            accuracy: target RMS force error (a Python float > 0).

        Returns:
            ``(errors, timings)``, one entry per candidate; the timing (seconds
            per call) is ``inf`` for a candidate that was not timed.
        """
        check_accuracy(accuracy)
        smearing = self.estimate_smearing(accuracy)
        errors = [
            float(self.error_bounds(smearing=smearing, cutoff=self.cutoff, **param))
            for param in self.params
        ]
        accepted = [i for i, error in enumerate(errors) if error <= accuracy]
        timings = [float("inf")] * len(self.params)
        best = float("inf")
        for index in self._to_time(accepted):
            timings[index] = self._timing(
                smearing, self.params[index], give_up_after=3.0 * best
            )
            best = min(best, timings[index])
        return errors, timings

    def _to_time(self, accepted: List[int]) -> List[int]:
        """The accepted candidates worth timing, in the order to time them."""
        if self._cost is not None and accepted:
            costs = [tuple(self._cost(self.params[i])) for i in accepted]
            accepted = [accepted[i] for i in pareto_front(costs)]
        if self._work is not None and accepted:
            work = {i: float(self._work(self.params[i])) for i in accepted}
            accepted = sorted(accepted, key=lambda i: work[i])
            cheapest = work[accepted[0]]
            accepted = [i for i in accepted if work[i] <= self.work_factor * cheapest][
                : self.max_timed
            ]
        return accepted

    def _timing(
        self,
        smearing: float,
        k_space_params: Dict[str, Any],
        give_up_after: Optional[float] = None,
    ) -> float:
        calculator = self.calculator(
            potential=InversePowerLawPotential(
                exponent=self.exponent,
                smearing=smearing,
                prefactor=self.prefactor,
            ),
            full_neighbor_list=self.full_neighbor_list,
            **k_space_params,
        )
        calculator.to(device=self.positions.device, dtype=self.positions.dtype)
        if give_up_after is None or not math.isfinite(give_up_after):
            return self.time_func(calculator)
        return self.time_func(calculator, give_up_after=give_up_after)


def check_inputs(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: Any,
    exponent: int,
    accuracy: Any,
    ranges: Sequence[Tuple[str, Any, str, Any, int, int]],
) -> None:
    """Front-door checks of the ``tune_*`` functions, before any work: exponent
    (``NotImplementedError``, first), system, cutoff, accuracy and grid ranges
    ``(low_name, low, high_name, high, smallest allowed, largest allowed)``."""
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


class TuningGrid(NamedTuple):
    """What a ``tune_*`` function searches; :func:`grid_search` does the rest."""

    #: the calculator class to time
    calculator: type
    #: the ``ErrorEstimate`` class that rates the candidates (built with SAFETY)
    estimate: type
    #: the grid bounds to check, as for :func:`check_inputs`
    ranges: Sequence[Tuple[str, Any, str, Any, int, int]]
    #: ``(lattice vector lengths, number of atoms) -> (params, cost, work)``: the
    #: candidates and the two cost models of :class:`GridSearchTuner`
    candidates: Callable[[List[float], int], Tuple[List[Dict[str, Any]], Any, Any]]
    #: the end of the warning when no candidate meets the accuracy
    hint: str


def grid_search(
    grid: TuningGrid,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    full_neighbor_list: bool,
    prefactor: float,
    exponent: int,
    accuracy: float,
) -> Tuple[float, Dict[str, Any], float]:
    """The procedure shared by ``tune_ewald``, ``tune_pme`` and ``tune_p3m``: check
    the inputs before any work, rate and time the candidates of ``grid``."""
    check_inputs(charges, cell, positions, cutoff, exponent, accuracy, grid.ranges)
    lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
    params, cost, work = grid.candidates(lengths, positions.shape[0])
    tuner = GridSearchTuner(
        charges=charges,
        cell=cell,
        positions=positions,
        cutoff=cutoff,
        calculator=grid.calculator,
        error_bounds=grid.estimate(charges, cell, positions, safety=SAFETY),
        params=params,
        neighbor_indices=neighbor_indices,
        neighbor_distances=neighbor_distances,
        full_neighbor_list=full_neighbor_list,
        prefactor=prefactor,
        exponent=exponent,
        cost=cost,
        work=work,
    )
    smearing = tuner.estimate_smearing(accuracy)
    errors, timings = tuner.tune(accuracy)
    if any(error < accuracy for error in errors):
        best = min(range(len(timings)), key=lambda i: timings[i])
        return smearing, params[best], timings[best]
    best = min(range(len(errors)), key=lambda i: errors[i])
    warnings.warn(
        "No parameter set meets the accuracy requirement "
        f"({accuracy:.3g}); returning the one with the smallest error estimate "
        f"({errors[best]:.3g}), not timed. {grid.hint}",
        UserWarning,
        stacklevel=3,
    )
    return smearing, params[best], timings[best]


def tune_cutoff(
    tune: Callable[..., Tuple[float, Dict[str, Any], float]],
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    cutoffs: Optional[Sequence[float]] = None,
    accuracy: float = 1e-3,
    *,
    smooth_meshes: bool = False,
    **kwargs,
) -> Tuple[float, float, Dict[str, Any], float]:
    """Choose the real-space cutoff too: tune for a few cutoffs, keep the fastest.

    A larger cutoff allows a larger smearing, hence a coarser reciprocal-space
    grid, at the price of more pairs; which balance is fastest depends on the
    system and the hardware. For each cutoff this runs ``tune`` (one of
    :func:`~torchpme.tuning.tune_ewald`, :func:`~torchpme.tuning.tune_pme`,
    :func:`~torchpme.tuning.tune_p3m`) on the neighbour list restricted to it
    (:meth:`TunerBase.filter_neighbors`), and returns the fastest result that
    meets ``accuracy``.

    Args:
        tune: the tuning function.
        charges, cell, positions: the system.
        neighbor_indices: ``(P, 2)`` pairs within (at least) ``max(cutoffs)``.
        neighbor_distances: ``(P,)`` their distances.
        cutoffs: cutoffs to try; by default ``[0.6, 0.75, 0.9, 1.0]`` times the
            largest distance in the neighbour list.
        accuracy: target RMS force error (a Python float > 0).
        smooth_meshes: passed on to ``tune`` when ``True`` (mesh sizes that are
            not powers of two, for :func:`~torchpme.tuning.tune_pme` and
            :func:`~torchpme.tuning.tune_p3m` only); ``False`` calls ``tune``
            without it, so any tuning function works as before.
        **kwargs: passed on to ``tune`` (e.g. ``full_neighbor_list``,
            ``prefactor``, grid bounds).

    Returns:
        ``(cutoff, smearing, params, timing)``: build the calculator with
        ``potential(smearing=smearing)`` and ``**params``, and the neighbour list
        with ``cutoff``. If no cutoff reaches the accuracy, a ``UserWarning`` is
        emitted and the result for the largest cutoff is returned.

    Example:
        >>> cutoff, smearing, params, timing = tune_cutoff(  # doctest: +SKIP
        ...     tune_pme, charges, cell, positions, indices, distances,
        ...     cutoffs=[4.0, 5.0, 6.0], accuracy=1e-4)
    """
    check_accuracy(accuracy)
    if check_flag("smooth_meshes", smooth_meshes):
        # only when set: tune_ewald has no such argument
        kwargs["smooth_meshes"] = True
    if cutoffs is None:
        if neighbor_distances.numel() == 0:
            raise ValueError(
                message(
                    "neighbor_distances",
                    "some pairs (or pass `cutoffs`)",
                    "an empty neighbour list",
                )
            )
        largest = float(neighbor_distances.detach().max())
        cutoffs = [f * largest for f in (0.6, 0.75, 0.9, 1.0)]
        # pairs at exactly the largest distance are dropped by the strict filter
        cutoffs[-1] = math.nextafter(largest, math.inf)
    cutoffs = [check_cutoff(c) for c in cutoffs]
    if not cutoffs:
        raise ValueError(message("cutoffs", "at least one cutoff", "[]"))
    results = []
    for cutoff in sorted(cutoffs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            smearing, params, timing = tune(
                charges,
                cell,
                positions,
                cutoff,
                neighbor_indices,
                neighbor_distances,
                accuracy=accuracy,
                **kwargs,
            )
        met = not any(issubclass(w.category, UserWarning) for w in caught)
        results.append((met, timing, cutoff, smearing, params))
    good = [r for r in results if r[0]]
    if good:
        _, timing, cutoff, smearing, params = min(good, key=lambda r: r[1])
        return cutoff, smearing, params, timing
    _, timing, cutoff, smearing, params = results[-1]
    warnings.warn(
        f"No cutoff of {sorted(cutoffs)} meets the accuracy requirement "
        f"({accuracy:.3g}); returning the result of the largest cutoff. Try "
        "larger cutoffs or a finer reciprocal-space grid.",
        UserWarning,
        stacklevel=2,
    )
    return cutoff, smearing, params, timing
