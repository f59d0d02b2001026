"""``Potential``: the interface of range-separated pair potentials."""

import math
from typing import Optional

import torch

from .._core.validation import check_finite_number, check_positive, message

__all__ = ["Potential"]


def _masked(values: torch.Tensor, pair_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``values · pair_mask`` (padding pairs give 0), or ``values`` without a mask."""
    if pair_mask is None:
        return values
    return values * pair_mask


def _exclusion_cutoff(scaled: torch.Tensor, degree: int) -> torch.Tensor:
    """``1 − ((1 − cos(π u))/2)^d`` for ``u = r/r_ex < 1``, else 0 (smooth at u = 1)."""
    u = torch.clamp(scaled, max=1.0)
    return 1.0 - ((1.0 - torch.cos(math.pi * u)) / 2.0) ** degree


def _check_exclusion(radius: Optional[float], degree: int) -> None:
    """Validate the exclusion radius (> 0 when given) and degree (an int >= 1)."""
    if radius is not None:
        check_positive("exclusion_radius", radius)
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(message("exclusion_degree", "an int >= 1", f"{degree!r}"))
    if degree < 1:
        raise ValueError(message("exclusion_degree", "an int >= 1", f"{degree}"))


def _require_smearing(smearing: Optional[torch.Tensor], method: str) -> torch.Tensor:
    """The smearing buffer; ``ValueError`` for a potential without one."""
    if smearing is None:
        raise ValueError(message("smearing", f"set to use `{method}`", "None"))
    return smearing


def _smearing_buffer(module: torch.nn.Module, smearing: Optional[float]) -> None:
    """Register ``smearing`` as a float64 0-dim buffer, or set it to ``None``."""
    if smearing is None:
        module.smearing = None
    else:
        check_positive("smearing", smearing)
        module.register_buffer(
            "smearing", torch.tensor(float(smearing), dtype=torch.float64)
        )


class Potential(torch.nn.Module):
    """Base class of pair potentials ``v(r)`` split into short and long range.

    .. math::

        v(r) = v_\\mathrm{sr}(r) + v_\\mathrm{lr}(r)

    The long-range part ``lr_from_dist`` is smooth and has the Fourier transform
    ``lr_from_k_sq``; the short-range part decays fast and is summed over neighbour
    pairs. A potential created with a ``smearing`` is range separated; without one
    only ``from_dist`` (the bare potential) is available. Subclasses implement
    ``from_dist``, ``lr_from_dist``, ``lr_from_k_sq``, ``self_contribution`` and
    ``background_correction``.

    An exclusion radius ``r_ex`` switches the long-range part off smoothly at short
    distances (e.g. between atoms of one molecule):

    .. math::

        f_\\mathrm{cut}(r) = 1 − \\left(\\frac{1 − \\cos(π r/r_\\mathrm{ex})}{2}\\right)^d
        \\quad (r < r_\\mathrm{ex}), \\qquad 0 \\quad (r ≥ r_\\mathrm{ex}),

    and the short-range part becomes ``−v_lr · f_cut`` so that
    ``v_sr + v_lr = v_lr · (1 − f_cut)``.

    Args:
        smearing: Gaussian width ``σ`` of the range separation (> 0), or ``None``.
        exclusion_radius: ``r_ex`` (> 0), or ``None`` for no exclusion.
        exclusion_degree: ``d``, an int >= 1.
        prefactor: unit factor multiplying the potential (see
            :mod:`torchpme.prefactors`).

    ``smearing`` (when set) and ``prefactor`` are float64 0-dim buffers: they do not
    change the dtype of float32 inputs.
    """

    def __init__(
        self,
        smearing: Optional[float] = None,
        exclusion_radius: Optional[float] = None,
        exclusion_degree: int = 1,
        prefactor: float = 1.0,
    ):
        super().__init__()
        _smearing_buffer(self, smearing)
        _check_exclusion(exclusion_radius, exclusion_degree)
        self.exclusion_radius: Optional[float] = (
            None if exclusion_radius is None else float(exclusion_radius)
        )
        self.exclusion_degree: int = exclusion_degree
        check_finite_number("prefactor", float(prefactor))
        self.register_buffer(
            "prefactor", torch.tensor(float(prefactor), dtype=torch.float64)
        )

    @torch.jit.unused
    def _not_implemented(self, method: str) -> torch.Tensor:
        raise NotImplementedError(
            f"`{method}` is not implemented by {type(self).__name__}"
        )

    @torch.jit.export
    def f_cutoff(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Exclusion switch ``f_cut(r)``: 1 at ``r = 0``, 0 from ``r_ex`` on.

        Args:
            dist: ``(P,)`` distances.
            pair_mask: optional ``(P,)`` bools, ``False`` for padding pairs.

        Returns:
            ``(P,)`` switch values.
        """
        radius = self.exclusion_radius
        if radius is None:
            raise ValueError(
                message("exclusion_radius", "set to use `f_cutoff`", "None")
            )
        return _masked(
            _exclusion_cutoff(dist / radius, self.exclusion_degree), pair_mask
        )

    @torch.jit.export
    def from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Bare potential ``v(r)``, ``(P,)`` from ``(P,)`` distances."""
        return self._not_implemented("from_dist")

    @torch.jit.export
    def sr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Short-range part: ``v − v_lr``, or ``−v_lr · f_cut`` with an exclusion.

        Args:
            dist: ``(P,)`` distances.
            pair_mask: optional ``(P,)`` bools, ``False`` for padding pairs.

        Returns:
            ``(P,)`` values.
        """
        _require_smearing(self.smearing, "sr_from_dist")
        if self.exclusion_radius is None:
            return self.from_dist(dist, pair_mask) - self.lr_from_dist(dist, pair_mask)
        return -self.lr_from_dist(dist, pair_mask) * self.f_cutoff(dist, pair_mask)

    @torch.jit.export
    def lr_from_dist(
        self, dist: torch.Tensor, pair_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Long-range part ``v_lr(r)``, ``(P,)`` from ``(P,)`` distances."""
        return self._not_implemented("lr_from_dist")

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """Fourier transform of ``v_lr`` at squared wave-vector norms (any shape)."""
        return self._not_implemented("lr_from_k_sq")

    @torch.jit.export
    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """``lr_from_k_sq``, under the name :class:`~torchpme.lib.KSpaceKernel` uses."""
        return self.lr_from_k_sq(k_sq)

    @torch.jit.export
    def self_contribution(self) -> torch.Tensor:
        """``v_lr(0)``: the interaction of a charge with its own smeared density."""
        return self._not_implemented("self_contribution")

    @torch.jit.export
    def background_correction(self) -> torch.Tensor:
        """Neutralising-background term, ``½ ∫ v_sr(r) d³r`` where that is finite."""
        return self._not_implemented("background_correction")

    @torch.jit.export
    def pbc_correction(
        self,
        periodic: Optional[torch.Tensor],
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """Correction for partial periodicity, ``(N, C)``; zero in the base class."""
        return self.prefactor * torch.zeros_like(charges)
