"""What torch-pme 0.5's error bounds share: the real-space term and its buffers."""

import math

import torch

from .tuner import TuningErrorBounds


class RealSpaceBounds(TuningErrorBounds):
    """Base of the compatible error bounds (Ewald, PME, P3M).

    Holds the buffers of the Kolafa–Perram real-space term ``volume``,
    ``sum_squared_charges`` and ``prefac = 2Q²/√N`` and evaluates that term;
    subclasses add their reciprocal-space term ``err_kspace``. Arguments as
    :class:`~torchpme.tuning.tuner.TuningErrorBounds`.
    """

    def __init__(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ):
        super().__init__(charges, cell, positions)
        sum_squared = torch.sum(charges**2)
        self.register_buffer("volume", torch.abs(torch.linalg.det(cell)))
        self.register_buffer("sum_squared_charges", sum_squared)
        self.register_buffer(
            "prefac", 2.0 * sum_squared / math.sqrt(positions.shape[0])
        )

    def err_rspace(self, smearing: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
        """The real-space term ``ΔF_real``."""
        return (
            self.prefac
            / torch.sqrt(cutoff * self.volume)
            * torch.exp(-(cutoff**2) / (2.0 * smearing**2))
        )

    def _as_tensor(self, value) -> torch.Tensor:
        """A parameter as a tensor in the dtype and on the device of the buffers."""
        return torch.as_tensor(
            value, dtype=self.prefac.dtype, device=self.prefac.device
        )

    def _with_real_space(
        self, kspace: torch.Tensor, smearing: torch.Tensor, cutoff: torch.Tensor
    ) -> torch.Tensor:
        """``√(ΔF_k² + ΔF_real²)`` for the k-space term ``kspace``."""
        return torch.sqrt(kspace**2 + self.err_rspace(smearing, cutoff) ** 2)
