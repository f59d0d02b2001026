"""The timing of candidates: wall-clock seconds of one calculator call."""

import time
from typing import Optional

import torch

from .._core.validation import check_choice, message
from .._utils import _validate_parameters

__all__ = ["TuningTimings"]


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
        periodic: ``(3,)`` bools passed to every call (open directions).
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
        periodic: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        _validate_parameters(
            charges, cell, positions, neighbor_indices, neighbor_distances
        )
        self.periodic = periodic
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
        # a calculator of the 0.5 API without `periodic` is timed as before
        extra = {} if self.periodic is None else {"periodic": self.periodic}
        self._synchronize()
        start = time.perf_counter()
        result = calculator.forward(
            positions=positions,
            charges=charges,
            cell=cell,
            neighbor_indices=self.neighbor_indices,
            neighbor_distances=distances,
            **extra,
        )
        value = (charges * result).sum() if forces else result.sum()
        if self.run_backward:
            value.backward(retain_graph=True)
        self._synchronize()
        return time.perf_counter() - start
