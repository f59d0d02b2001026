"""The base classes of the tuning package: error-bound modules and tuners.

:class:`TuningErrorBounds` is a module that holds a system and rates parameters;
:class:`TunerBase` holds a system to tune for and chooses the smearing from the
real-space cutoff (:meth:`TunerBase.estimate_smearing`).
"""

import math
from typing import Tuple

import numpy as np
import torch

from .._core.validation import message
from ..calculators import Calculator
from . import _density
from ._validation import check_accuracy, check_tunable

__all__ = ["TunerBase", "TuningErrorBounds"]


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
        ``V/D(r_c)`` (:mod:`torchpme.tuning._density`; torch-pme 0.5 uses the
        cell volume, which misses the accuracy there: 1.8× on a slab).

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
