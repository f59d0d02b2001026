"""The grid search: rate every candidate, time only those that can win.

:func:`grid_search` is the procedure of ``tune_ewald``, ``tune_pme`` and
``tune_p3m``; a :class:`TuningGrid` says what each of them searches.
"""

import math
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .._core.validation import count_periodic, message
from ..potentials import InversePowerLawPotential
from ._base import TunerBase, TuningErrorBounds
from ._open import OpenMeshEstimate, check_open_method, proxy_cell
from ._timing import TuningTimings
from ._validation import (
    GridRange,
    check_accuracy,
    check_candidates,
    check_cutoff,
    check_inputs,
    check_neighbor_list,
    check_smearing,
    real_number,
)

__all__ = ["SAFETY", "GridSearchTuner", "TuningGrid", "grid_search", "pareto_front"]

#: Factor between the estimated RMS force error and the accuracy it must reach:
#: a candidate is accepted when ``SAFETY · estimate`` is below the accuracy.
SAFETY = 1.5


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
        charges, cell, positions, cutoff, calculator: as :class:`TunerBase`.
        full_neighbor_list, prefactor, exponent: as :class:`TunerBase`.
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
        periodic: ``(3,)`` bools passed to the timed calls.
        calculator_options: keyword arguments of ``calculator`` common to all
            candidates (e.g. ``slab_method``).
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
        periodic: Optional[torch.Tensor] = None,
        calculator_options: Optional[Dict[str, Any]] = None,
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
        check_neighbor_list(
            charges, cell, positions, neighbor_indices, neighbor_distances
        )
        if not isinstance(error_bounds, TuningErrorBounds):
            raise TypeError(
                message(
                    "error_bounds",
                    "a TuningErrorBounds instance",
                    f"{type(error_bounds).__name__}",
                )
            )
        check_candidates(params)
        self.error_bounds = error_bounds
        self.params = params
        self._cost = cost
        self._work = work
        self.max_timed = max_timed
        self.work_factor = work_factor
        self.calculator_options = dict(calculator_options or {})
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
            periodic=periodic,
        )

    def tune(
        self, accuracy: float = 1e-3, *, smearing: Optional[float] = None
    ) -> Tuple[List[float], List[float]]:
        """Errors of all candidates and timings of those that can win.

        Args:
            accuracy: target RMS force error (a Python float > 0).
            smearing: rate and time the candidates with this smearing instead
                of :meth:`estimate_smearing` of ``accuracy``.

        Returns:
            ``(errors, timings)``, one entry per candidate; the timing (seconds
            per call) is ``inf`` for a candidate that was not timed.
        """
        check_accuracy(accuracy)
        if smearing is None:
            smearing = self.estimate_smearing(accuracy)
        else:
            smearing = check_smearing(smearing)
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
            **self.calculator_options,
        )
        calculator.to(device=self.positions.device, dtype=self.positions.dtype)
        if give_up_after is None or not math.isfinite(give_up_after):
            return self.time_func(calculator)
        return self.time_func(calculator, give_up_after=give_up_after)


class TuningGrid(NamedTuple):
    """What a ``tune_*`` function searches; :func:`grid_search` does the rest."""

    #: the calculator class to time
    calculator: type
    #: the ``ErrorEstimate`` class that rates the candidates (built with SAFETY)
    estimate: type
    #: the grid bounds to check before any work
    ranges: Sequence[GridRange]
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
    smearing: Optional[float] = None,
    periodic: Optional[torch.Tensor] = None,
) -> Tuple[float, Dict[str, Any], float]:
    """The procedure shared by ``tune_ewald``, ``tune_pme`` and ``tune_p3m``: check
    the inputs before any work, rate and time the candidates of ``grid`` (with
    ``smearing`` if given, else the one of :meth:`TunerBase.estimate_smearing`).
    With open directions in ``periodic`` the candidates are rated on the cell of
    :func:`~torchpme.tuning._open.proxy_cell` and timed on the system as it is."""
    check_open_method(grid.calculator, periodic)
    is_open = count_periodic(periodic) < 3
    try:
        length = real_number("cutoff", cutoff)
    except TypeError:
        length = 1.0  # check_inputs reports the cutoff before any work
    cell, options = proxy_cell(cell, positions, periodic, length)
    check_inputs(charges, cell, positions, cutoff, exponent, accuracy, grid.ranges)
    cutoff = check_cutoff(cutoff)
    if smearing is not None:
        smearing = check_smearing(smearing)
    lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
    params, cost, work = grid.candidates(lengths, positions.shape[0])
    if not params:
        low = grid.ranges[-1][0]
        raise ValueError(
            message(
                low,
                "low enough for a candidate within the memory budget (LIMITS in "
                "torchpme._core.workload, or the TORCHPME_MEMORY_LIMIT variable)",
                "no candidate that fits",
            )
        )
    if is_open and any("fixed_mesh" in param for param in params):
        raise ValueError(
            message(
                "smooth_meshes",
                "False with open directions (the mesh of a cluster, wire or "
                "slab follows its atoms)",
                "True",
            )
        )
    estimate = grid.estimate(charges, cell, positions, safety=SAFETY)
    if is_open:
        estimate = OpenMeshEstimate(estimate, charges)
    tuner = GridSearchTuner(
        charges=charges,
        cell=cell,
        positions=positions,
        cutoff=cutoff,
        calculator=grid.calculator,
        error_bounds=estimate,
        params=params,
        neighbor_indices=neighbor_indices,
        neighbor_distances=neighbor_distances,
        full_neighbor_list=full_neighbor_list,
        prefactor=prefactor,
        exponent=exponent,
        cost=cost,
        work=work,
        periodic=periodic,
        calculator_options=options,
    )
    if smearing is None:
        smearing = tuner.estimate_smearing(accuracy)
    errors, timings = tuner.tune(accuracy, smearing=smearing)
    params = [{**param, **options} for param in params]
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
