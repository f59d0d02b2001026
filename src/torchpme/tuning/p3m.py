"""Tuning of :class:`~torchpme.P3MCalculator`: error bounds and ``tune_p3m``.

What is particular to this method lives here (its compatible bound, the
weights and node counts its estimate covers, the defaults of ``tune_p3m``); the
estimate and the search are the mesh tuner's (:mod:`torchpme.tuning._mesh`).
"""

import math
from fractions import Fraction as F
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..calculators import P3MCalculator
from ._bounds import MeshBounds
from ._mesh import MeshErrorEstimate, mesh_grid
from ._search import grid_search
from ._validation import check_nodes

__all__ = ["A_COEF", "P3MErrorBounds", "P3MErrorEstimate", "tune_p3m"]

# a_0 … a_{n-1} for each order n, as published
_COLUMNS = {
    1: ["2/3"],
    2: ["1/50", "5/294"],
    3: ["1/588", "7/1440", "21/3872"],
    4: ["1/4320", "3/1936", "7601/2271360", "143/28800"],
    5: ["1/23232", "7601/13628160", "143/69120", "517231/106536960",
        "106640677/11737571328"],
    6: ["691/68140800", "13/57600", "47021/35512320", "9694607/2095994880",
        "733191589/59609088000", "326190917/11700633600"],
    7: ["1/345600", "3617/35512320", "745739/838397952", "56399353/12773376000",
        "25091609/1560084480", "1755948832039/36229939200000",
        "4887769399/37838389248"],
}  # fmt: skip

#: Coefficients ``a_m^{(n)}`` of the P3M error estimate, ``A_COEF[m][n]`` for
#: ``m = 0 … 6`` and assignment order ``n = 1 … 7`` (column 0 and entries with
#: ``m ≥ n`` are ``None``): the exact fractions published by Deserno & Holm,
#: J. Chem. Phys. 109, 7694 (1998), doi:10.1063/1.477415 (companion of
#: doi:10.1063/1.477414).
A_COEF: List[List[Optional[F]]] = [
    [None] + [F(_COLUMNS[n][m]) if m < n else None for n in range(1, 8)]
    for m in range(7)
]


class P3MErrorBounds(MeshBounds):
    """torch-pme 0.5's error bound of P3M (compatible numbers).

    With ``α = 1/(√2 σ)``, ``H`` as in :class:`~torchpme.tuning.pme.PMEErrorBounds`,
    ``x = Hα`` and assignment order ``n``:

    .. math::

        ΔF_k = \\frac{2Q^2}{\\sqrt{N}} \\frac{x^n}{V^{2/3}}
               \\sqrt{α V^{1/3} \\sqrt{2π} Σ_{m=0}^{n−1} a_m^{(n)} x^{2m}},

    (Deserno & Holm's estimate for the optimal influence function and
    ik-differentiation; ``a_m^{(n)}`` = :data:`A_COEF`), combined with the
    real-space term as ``√(ΔF_real² + ΔF_k²)``. :class:`~torchpme.P3MCalculator`
    uses the plain ``G/U²`` filter and differentiates the B-spline assignment, so
    measured errors exceed the bound (by up to ~20× for ``n = 2``);
    :func:`tune_p3m` selects with :class:`P3MErrorEstimate`.

    Reference: Deserno & Holm, J. Chem. Phys. 109, 7678 and 7694 (1998),
    doi:10.1063/1.477414 and doi:10.1063/1.477415.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.

    Example:
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0, 0], [0.4, 0.4, 0.4]], dtype=torch.float64)
        >>> bounds = P3MErrorBounds(charges, torch.eye(3, dtype=torch.float64), positions)
        >>> round(float(bounds(1.0, 0.5, 4.4, 3)), 4)
        0.0005
    """

    def __init__(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ):
        super().__init__(charges, cell, positions)
        self.register_buffer("cell", cell)
        self.register_buffer("positions", positions)

    def err_kspace(
        self,
        smearing: torch.Tensor,
        mesh_spacing: torch.Tensor,
        interpolation_nodes: torch.Tensor,
    ) -> torch.Tensor:
        """The reciprocal-space term ``ΔF_k`` (``interpolation_nodes`` in 1 … 7)."""
        nodes = check_nodes(interpolation_nodes, 1, 7)
        h = self.mean_spacing(mesh_spacing)
        alpha = 1.0 / 2.0**0.5 / smearing
        x = h * alpha
        series = sum(float(A_COEF[m][nodes]) * x ** (2 * m) for m in range(nodes))
        return (
            self.prefac
            / self.volume ** (2.0 / 3.0)
            * x**nodes
            * torch.sqrt(
                alpha * self.volume ** (1.0 / 3.0) * math.sqrt(2.0 * math.pi) * series
            )
        )

    def forward(
        self,
        smearing: float,
        mesh_spacing: float,
        cutoff: float,
        interpolation_nodes: int,
    ) -> torch.Tensor:
        """Same as :meth:`error` (this positional order)."""
        return self.error(smearing, mesh_spacing, cutoff, interpolation_nodes)

    def error(
        self,
        smearing: float,
        mesh_spacing: float,
        cutoff: float,
        interpolation_nodes: int,
    ) -> torch.Tensor:
        """``√(ΔF_k² + ΔF_real²)``, a 0-dim tensor in the dtype of the charges.

        Args:
            smearing: Gaussian smearing ``σ``.
            mesh_spacing: ``h`` of :class:`~torchpme.P3MCalculator`.
            cutoff: real-space cutoff ``r_c``.
            interpolation_nodes: assignment order ``n``, 1 … 7.
        """
        return self._total(smearing, cutoff, mesh_spacing, interpolation_nodes)


class P3MErrorEstimate(MeshErrorEstimate):
    """RMS error of :class:`~torchpme.P3MCalculator`, as the tuner uses it.

    The error of the pipeline as implemented (B-spline assignment of order ``n``,
    filter ``G/U²`` along the lattice vectors, forces by automatic
    differentiation, including the mesh self-force) for charges at uncorrelated
    positions, from the Hockney–Eastwood error functional worked out in
    :mod:`torchpme.tuning._estimates`; plus the Kolafa–Perram real-space term;
    the same for the potentials ``V_i``. Returns
    ``safety · max(√(ΔF_real² + ΔF_k²), √(ΔV_real² + ΔV_k²))``. Assumes the
    calculator's default influence function (not ``cartesian_influence=True``).

    Reference: Deserno & Holm, J. Chem. Phys. 109, 7678 (1998),
    doi:10.1063/1.477414; Kolafa & Perram, Mol. Simul. 9, 351 (1992),
    doi:10.1080/08927029208049126.

    Args:
        charges, cell, positions: the system.
        safety: factor applied to the estimate.
    """

    calculator = P3MCalculator
    weights = "P3M"
    node_range = (1, 5)

    def error(
        self,
        smearing: float,
        mesh_spacing: float,
        cutoff: float,
        interpolation_nodes: int,
        *,
        fixed_mesh: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """The estimated RMS error (times ``safety``), a 0-dim tensor.

        Args:
            smearing: Gaussian smearing ``σ``.
            mesh_spacing: ``h`` of :class:`~torchpme.P3MCalculator`.
            cutoff: real-space cutoff ``r_c``.
            interpolation_nodes: assignment order ``n``, 1 … 5.
            fixed_mesh: mesh points per lattice vector, used instead of the size
                derived from ``mesh_spacing`` (as by the calculator).
        """
        return self._mesh_error(
            smearing, cutoff, mesh_spacing, interpolation_nodes, fixed_mesh
        )


def tune_p3m(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    full_neighbor_list: bool = False,
    prefactor: float = 1.0,
    exponent: int = 1,
    nodes_lo: int = 2,
    nodes_hi: int = 5,
    mesh_lo: int = 2,
    mesh_hi: int = 7,
    accuracy: float = 1e-3,
    *,
    smooth_meshes: bool = False,
    smearing: Optional[float] = None,
    periodic: Optional[torch.Tensor] = None,
) -> Tuple[float, Dict[str, Any], float]:
    """Smearing, mesh spacing and order of the fastest P3M meeting ``accuracy``.

    As :func:`~torchpme.tuning.tune_pme`, with B-spline orders
    ``nodes_lo … nodes_hi`` (1 … 5, default 2 … 5) and
    :class:`P3MErrorEstimate` (times :data:`~torchpme.tuning.tuner.SAFETY`).
    ``accuracy`` bounds the RMS errors of forces and potentials (see
    :mod:`torchpme.tuning.tuner`). ``smooth_meshes=True`` lets the mesh sizes be
    any 5-smooth integers ``2^a 3^b 5^c`` instead of powers of two only (up to 8×
    fewer mesh points for the same accuracy) and adds them to the result as
    ``fixed_mesh``, as for :func:`~torchpme.tuning.tune_pme`.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.
        cutoff: real-space cutoff.
        neighbor_indices: ``(P, 2)`` pairs within (at least) ``cutoff``.
        neighbor_distances: ``(P,)`` their distances.
        full_neighbor_list: whether the list is full.
        prefactor: the potential's prefactor (timing only; ``accuracy`` is in
            units with prefactor 1).
        exponent: only 1 (Coulomb) is supported.
        nodes_lo, nodes_hi: range of the assignment order (1 … 5).
        mesh_lo, mesh_hi: range of the mesh exponent ``e`` (1 … 10).
        accuracy: target RMS force error (a Python float > 0).
        smearing: tune the reciprocal-space parameters for this smearing
            (kept and returned) instead of the one derived from the cutoff.
        smooth_meshes: also choose mesh sizes that are not powers of two (see
            above); the parameters then include ``fixed_mesh``.
        periodic: ``(3,)`` bools: clusters, wires and slabs, as for
            :func:`~torchpme.tuning.tune_pme`.

    Returns:
        ``(smearing, {"interpolation_nodes": n, "mesh_spacing": h}, seconds per
        call)``, with ``"fixed_mesh": [n_0, n_1, n_2]`` added when
        ``smooth_meshes`` is set. If no candidate meets the accuracy a
        ``UserWarning`` is emitted and the candidate with the smallest error
        estimate is returned (its timing is ``inf``).

    Reference: Deserno & Holm, J. Chem. Phys. 109, 7678 (1998),
    doi:10.1063/1.477414.

    Example:
        >>> smearing, params, timing = tune_p3m(  # doctest: +SKIP
        ...     charges, cell, positions, 5.0, indices, distances, accuracy=1e-4)
        >>> calculator = P3MCalculator(CoulombPotential(smearing), **params)  # doctest: +SKIP
    """
    return grid_search(
        mesh_grid(P3MErrorEstimate, nodes_lo, nodes_hi, mesh_lo, mesh_hi, smooth_meshes),
        charges, cell, positions, cutoff, neighbor_indices, neighbor_distances,
        full_neighbor_list, prefactor, exponent, accuracy, smearing, periodic,
    )  # fmt: skip
