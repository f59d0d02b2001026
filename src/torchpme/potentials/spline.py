"""``SplinePotential``: a tabulated long-range potential and its tabulated kernel."""

import math
from typing import Optional

import torch

from .._core.validation import message
from ..lib.splines import (
    CubicSpline,
    CubicSplineReciprocal,
    compute_second_derivatives,
    compute_spline_ft,
)
from .potential import Potential, _masked

__all__ = ["SplinePotential"]


def _as_tensor(value: Optional[float]) -> Optional[torch.Tensor]:
    return None if value is None else torch.tensor(float(value), dtype=torch.float64)


def _value_at_zero(
    spline: torch.nn.Module, zero: torch.Tensor, given: Optional[float]
) -> torch.Tensor:
    """``spline(0)`` with shape ``(1,)``, or the given value as a 0-dim tensor."""
    if given is None:
        return spline(zero)
    return torch.tensor(float(given), dtype=zero.dtype, device=zero.device)


class SplinePotential(Potential):
    """A long-range potential given on a radial grid, interpolated by cubic splines.

    .. math::

        v_\\mathrm{lr}(r) = A\\, S(r), \\qquad
        \\hat v_\\mathrm{lr}(k) = A\\, \\hat S(k^2), \\qquad
        \\hat y(k) = 4π \\int_0^∞ r\\, y(r) \\frac{\\sin kr}{k} dr

    where ``S`` interpolates ``(r_grid, y_grid)`` and ``Ŝ`` interpolates
    ``(k_grid², yhat_grid)``; without ``yhat_grid`` the kernel is the exact
    transform of the spline (:func:`~torchpme.lib.compute_spline_ft`, needs SciPy).
    The whole potential is long range (``sr_from_dist`` is 0) and is assumed to
    vanish at infinity. With ``reciprocal=True`` both splines run on ``1/r`` (and
    ``1/k²``) axes, which suits potentials decaying like a power law.

    Compatibility quirks kept from torch-pme 0.5: ``from_dist`` applies the
    prefactor twice (``A² S(r)``); ``self_contribution`` has shape ``(1,)`` unless
    ``y_at_zero`` is given; ``background_correction`` is a ``(1,)`` zero in the
    default float dtype.

    Args:
        r_grid: ``(n,)`` ascending radii (> 0 with ``reciprocal=True``).
        y_grid: ``(n,)`` potential values on ``r_grid``.
        k_grid: ``(m,)`` ascending wave-vector norms of ``yhat_grid``; default
            ``2π/r_grid`` (reciprocal) or ``r_grid``.
        yhat_grid: ``(m,)`` kernel values on ``k_grid``; default: computed.
        reciprocal: interpolate on the reciprocal axes.
        y_at_zero: value at ``r = 0`` (default: the spline's extrapolation).
        yhat_at_zero: kernel value at ``k = 0`` (default: extrapolated).
        smearing: only marks the potential as range separated (> 0), or ``None``.
        exclusion_radius: see :class:`Potential` (unused by this potential).
        exclusion_degree: see :class:`Potential`.
        prefactor: unit factor.
    """

    def __init__(
        self,
        r_grid: torch.Tensor,
        y_grid: torch.Tensor,
        k_grid: Optional[torch.Tensor] = None,
        yhat_grid: Optional[torch.Tensor] = None,
        reciprocal: Optional[bool] = False,
        y_at_zero: Optional[float] = None,
        yhat_at_zero: Optional[float] = None,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
        prefactor: float = 1.0,
    ):
        super().__init__(smearing, exclusion_radius, exclusion_degree, prefactor)
        if r_grid.dim() != 1 or r_grid.shape[0] < 2:
            raise ValueError(
                message("r_grid", "1-D with >= 2 points", f"shape {list(r_grid.shape)}")
            )
        if y_grid.shape != r_grid.shape:
            raise ValueError(
                message(
                    "y_grid",
                    f"as long as `r_grid` ({r_grid.shape[0]})",
                    f"shape {list(y_grid.shape)}",
                )
            )
        if not bool(torch.isfinite(r_grid).all() and torch.isfinite(y_grid).all()):
            raise ValueError(
                message("r_grid, y_grid", "finite", "NaN or infinite entries")
            )
        if not bool(torch.all(r_grid[1:] > r_grid[:-1])):
            raise ValueError(
                message("r_grid", "strictly increasing", "unsorted or repeated points")
            )
        if reciprocal and not bool(torch.min(r_grid) > 0.0):
            raise ValueError(
                message("r_grid", "positive with reciprocal=True", "values <= 0")
            )
        self.register_buffer("r_grid", r_grid)
        self.register_buffer("y_grid", y_grid)
        if reciprocal:
            self._spline = CubicSplineReciprocal(r_grid, y_grid, _as_tensor(y_at_zero))
        else:
            self._spline = CubicSpline(r_grid, y_grid)

        if k_grid is None:
            if reciprocal:
                k_grid = torch.flip(2.0 * math.pi / r_grid, [0])
            else:
                k_grid = r_grid.detach().clone()
        if yhat_grid is None:
            second = compute_second_derivatives(r_grid, y_grid)
            yhat_grid = compute_spline_ft(k_grid, r_grid, y_grid, second)
        self.register_buffer("k_grid", k_grid)
        self.register_buffer("yhat_grid", yhat_grid)
        if reciprocal:
            self._krn_spline = CubicSplineReciprocal(
                k_grid**2, yhat_grid, _as_tensor(yhat_at_zero)
            )
        else:
            self._krn_spline = CubicSpline(k_grid**2, yhat_grid)

        zero = torch.zeros(1, dtype=r_grid.dtype, device=r_grid.device)
        # derived values: they follow .to() but stay out of the state dict
        self.register_buffer(
            "_y_at_zero",
            _value_at_zero(self._spline, zero, y_at_zero),
            persistent=False,
        )
        self.register_buffer(
            "_yhat_at_zero",
            _value_at_zero(self._krn_spline, zero, yhat_at_zero),
            persistent=False,
        )

    @torch.jit.export
    def from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A (v_lr + v_sr) = A² S(r)`` (prefactor twice, as in torch-pme 0.5)."""
        total = self.lr_from_dist(dist, pair_mask) + self.sr_from_dist(dist, pair_mask)
        return self.prefactor * total

    @torch.jit.export
    def lr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``A S(r)``, shape of ``dist``."""
        return _masked(self.prefactor * self._spline(dist), pair_mask)

    @torch.jit.export
    def sr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Zero: the whole potential is long range."""
        return 0.0 * dist

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``A Ŝ(k²)``, shape of ``k_sq``."""
        return self.prefactor * self._krn_spline(k_sq)

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``A S(0)`` (or ``A y_at_zero``)."""
        return self.prefactor * self._y_at_zero

    @torch.jit.export
    def background_correction(self) -> torch.Tensor:
        """A ``(1,)`` zero: the potential is assumed to vanish at infinity."""
        return self.prefactor * torch.zeros(1, device=self.prefactor.device)
