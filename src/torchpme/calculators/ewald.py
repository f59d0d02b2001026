"""``EwaldCalculator``: the long-range part as an explicit sum over k-vectors."""

from typing import List, Optional

import torch

from .._core import kspace
from .._core.pairs import chunk_size, ewald_sum, wrap_positions
from .._core.validation import check_positive, message
from ..potentials import Potential
from .calculator import Calculator

__all__ = ["EwaldCalculator", "check_range_separated"]


def check_range_separated(potential: Potential) -> None:
    """Reciprocal-space methods need a potential with a positive smearing."""
    if potential.smearing is None:
        raise ValueError(
            message(
                "potential",
                "range-separated (created with a smearing) for a k-space method",
                "a potential without smearing",
            )
        )
    if not float(potential.smearing) > 0.0:
        raise ValueError(message("smearing", "> 0", f"{float(potential.smearing)}"))


class EwaldCalculator(Calculator):
    """Ewald summation: short range over neighbour pairs, long range over k-vectors.

    .. math::

        φ_i = \\frac{1}{2V} \\sum_{k} G(k) \\sum_j q_j \\cos(k·(r_i − r_j))
              − \\text{self} − \\text{background} (+ \\text{slab})

    with ``G = potential.lr_from_k_sq``. The k-vectors are all integer triplets of
    an FFT layout of ``n_d = ⌈‖a_d‖/λ⌉`` points per axis (wavelengths down to about
    ``2λ``); the sum, even in ``k``, runs over one k of each ``±k`` pair with
    weight 2 (k-vectors passed to ``forward`` are summed as given). Cost O(N·K) ~
    O(N²); use PME or P3M for large systems.

    Args:
        potential: range-separated potential (with a smearing).
        lr_wavelength: ``λ``, the shortest wavelength kept in reciprocal space.
        full_neighbor_list: whether the neighbour list is full (see
            :class:`Calculator`).

    Reference: Ewald, Ann. Phys. 369, 253 (1921), doi:10.1002/andp.19213690304.

    Example:
        >>> import torch
        >>> from torchpme import CoulombPotential, EwaldCalculator
        >>> from torchpme.neighbors import compute_neighbors
        >>> # CsCl: Cs+ at the corner, Cl- at the centre of a unit cube
        >>> cell = torch.eye(3, dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        ...                          dtype=torch.float64)
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> indices, distances = compute_neighbors(positions, cell, cutoff=1.0)
        >>> potential = CoulombPotential(smearing=0.2)
        >>> calculator = EwaldCalculator(potential, lr_wavelength=0.1)
        >>> potentials = calculator(charges, cell, positions, indices, distances)
        >>> # the Madelung energy -1.762675 · 2/√3 of one ion pair
        >>> round(float((charges * potentials).sum()), 5)
        -2.03536
    """

    def __init__(
        self,
        potential: Potential,
        lr_wavelength: float,
        full_neighbor_list: bool = False,
    ):
        super().__init__(potential=potential, full_neighbor_list=full_neighbor_list)
        check_range_separated(potential)
        check_positive("lr_wavelength", lr_wavelength)
        self.lr_wavelength: float = lr_wavelength

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        kvectors: Optional[torch.Tensor] = None,
        node_mask: Optional[torch.Tensor] = None,
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        weights: Optional[torch.Tensor] = None
        if kvectors is None:
            # our own k-set: half of it, each ±k pair once with weight 2
            lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
            kvectors, weights = kspace.half_kvectors_for_ewald(
                cell,
                kspace.ewald_size(lengths, self.lr_wavelength, positions.shape[0]),
            )
        kernel = self.potential.lr_from_k_sq(torch.sum(kvectors * kvectors, dim=-1))
        if weights is not None:
            kernel = kernel * weights
        chunk = chunk_size(positions.shape[0])
        volume = torch.abs(torch.linalg.det(cell))
        wrapped = wrap_positions(positions, cell)
        potential = ewald_sum(wrapped, charges, kvectors, kernel, chunk) / volume
        return self._finish_kspace(
            potential, charges, cell, positions, periodic, node_mask
        )
