"""What torch-pme 0.5's error bounds share: the real-space term, its buffers and
the mean mesh spacing of the PME and P3M bounds."""

import math

import torch

from ._base import TuningErrorBounds


class RealSpaceBounds(TuningErrorBounds):
    """Base of the compatible error bounds (Ewald, PME, P3M).

    Holds the buffers of the Kolafa–Perram real-space term ``volume``,
    ``sum_squared_charges`` and ``prefac = 2Q²/√N`` and evaluates that term;
    subclasses add their reciprocal-space term ``err_kspace(smearing,
    resolution, *others)``. Arguments as
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

    def _total(self, smearing, cutoff, resolution, *others) -> torch.Tensor:
        """``√(ΔF_k² + ΔF_real²)`` with ``ΔF_k = err_kspace(σ, resolution,
        *others)``; ``smearing``, ``cutoff`` and the k-space ``resolution`` (a
        wavelength or a mesh spacing) become tensors like the buffers, ``others``
        (the interpolation nodes) are passed on as given."""
        smearing = self._as_tensor(smearing)
        cutoff = self._as_tensor(cutoff)
        kspace = self.err_kspace(smearing, self._as_tensor(resolution), *others)
        return torch.sqrt(kspace**2 + self.err_rspace(smearing, cutoff) ** 2)


class MeshBounds(RealSpaceBounds):
    """Base of the compatible PME and P3M bounds: adds the buffer
    ``cell_dimensions`` (the lengths ``L_d`` of the lattice vectors) and their
    mean mesh spacing."""

    def __init__(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ):
        super().__init__(charges, cell, positions)
        self.register_buffer("cell_dimensions", torch.linalg.norm(cell, dim=1))

    def mean_spacing(self, mesh_spacing: torch.Tensor) -> torch.Tensor:
        """torch-pme 0.5's mean spacing ``H = (H_0 H_1 H_2)^{1/3}``,
        ``H_d = L_d/(2L_d/h + 1)`` (no power-of-two rounding)."""
        spacings = self.cell_dimensions / (
            2.0 * self.cell_dimensions / mesh_spacing + 1
        )
        return torch.prod(spacings) ** (1.0 / 3.0)
