"""Choosing the real-space cutoff: tune for a few cutoffs, keep the fastest."""

import math
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from .._core.validation import message
from ._validation import check_accuracy, check_cutoff, check_flag

__all__ = ["tune_cutoff"]


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
    (:meth:`~torchpme.tuning.tuner.TunerBase.filter_neighbors`), and returns the
    fastest result that meets ``accuracy``.

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
