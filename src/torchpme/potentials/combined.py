"""``CombinedPotential``: a weighted sum of potentials, with optionally learnable
weights."""

from typing import List, Optional

import torch

from .._core.validation import message
from .potential import Potential

__all__ = ["CombinedPotential"]


class CombinedPotential(Potential):
    """Weighted sum of potentials, e.g. ``w₁/r + w₂/r⁶`` with weights to learn.

    .. math::

        v(r) = \\sum_j w_j v_j(r)

    and likewise for every part (short and long range, kernel, self and background
    terms). Each constituent applies its own prefactor. Terms of different shapes
    (e.g. a ``(1,)`` and a 0-dim self term) broadcast against each other, and each
    weight enters as a 0-dim tensor, so float32 weights do not change the dtype of
    float64 terms (nor float64 weights that of float32 terms). The 2-D slab correction is not
    applied (zero, as in the base class), and ``f_cutoff`` uses this potential's own
    exclusion radius.

    Args:
        potentials: the constituents; all with a smearing or all without.
        initial_weights: ``(len(potentials),)`` weights (default ones, float32).
        learnable_weights: store the weights as a ``Parameter`` (default) or a
            buffer.
        smearing: must be given (> 0) exactly when the constituents have one; only
            marks the combination as range separated.
        exclusion_radius: see :class:`Potential`.
        exclusion_degree: see :class:`Potential`.
    """

    def __init__(
        self,
        potentials: List[Potential],
        initial_weights: Optional[torch.Tensor] = None,
        learnable_weights: Optional[bool] = True,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
    ):
        super().__init__(smearing, exclusion_radius, exclusion_degree)
        if len(potentials) == 0:
            raise ValueError(message("potentials", "a non-empty list", "[]"))
        for potential in potentials:
            if not isinstance(potential, Potential):
                raise TypeError(
                    message(
                        "potentials",
                        "a list of torchpme Potentials",
                        f"an item of type {type(potential).__name__}",
                    )
                )
        separated = [potential.smearing is not None for potential in potentials]
        if any(separated) and not all(separated):
            raise ValueError(
                message(
                    "potentials",
                    "all range separated (with a smearing) or all direct",
                    "a mix",
                )
            )
        if all(separated) and smearing is None:
            raise ValueError(
                message(
                    "smearing",
                    "given when the potentials are range separated",
                    "None",
                )
            )
        if not any(separated) and smearing is not None:
            raise ValueError(
                message("smearing", "None for direct potentials", f"{smearing}")
            )
        if initial_weights is None:
            initial_weights = torch.ones(len(potentials))
        if initial_weights.shape != (len(potentials),):
            raise ValueError(
                message(
                    "initial_weights",
                    f"one weight per potential, shape ({len(potentials)},)",
                    f"shape {list(initial_weights.shape)}",
                )
            )
        self.potentials = torch.nn.ModuleList(potentials)
        if learnable_weights:
            self.weights = torch.nn.Parameter(initial_weights)
        else:
            self.register_buffer("weights", initial_weights)

    def _combine(self, values: List[torch.Tensor]) -> torch.Tensor:
        """``Σ_j w_j values_j``: the terms broadcast against each other, and the 0-dim
        weights ``w_j`` leave the terms' dtype unchanged."""
        total = self.weights[0] * values[0]
        for j in range(1, len(values)):
            total = total + self.weights[j] * values[j]
        return total

    @torch.jit.export
    def from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``Σ_j w_j v_j(r)``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.from_dist(dist, pair_mask))
        return self._combine(values)

    @torch.jit.export
    def sr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``Σ_j w_j v_sr,j(r)``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.sr_from_dist(dist, pair_mask))
        return self._combine(values)

    @torch.jit.export
    def lr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``Σ_j w_j v_lr,j(r)``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.lr_from_dist(dist, pair_mask))
        return self._combine(values)

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``Σ_j w_j v̂_lr,j(k)``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.lr_from_k_sq(k_sq))
        return self._combine(values)

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``Σ_j w_j self_j``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.self_contribution())
        return self._combine(values)

    @torch.jit.export
    def background_correction(self) -> torch.Tensor:
        """``Σ_j w_j background_j``."""
        values: List[torch.Tensor] = []
        for potential in self.potentials:
            values.append(potential.background_correction())
        return self._combine(values)
