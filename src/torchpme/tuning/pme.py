"""Tuning of :class:`~torchpme.PMECalculator`: error bounds and ``tune_pme``.

What is particular to this method lives here (its compatible bound, the
weights and node counts its estimate covers, the defaults of ``tune_pme``); the
estimate and the search are the mesh tuner's (:mod:`torchpme.tuning._mesh`).
"""

import math
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..calculators import PMECalculator
from ._bounds import MeshBounds
from ._mesh import MeshErrorEstimate, mesh_grid
from ._search import grid_search
from ._validation import check_nodes

__all__ = ["PMEErrorBounds", "PMEErrorEstimate", "tune_pme"]

# RMS over one mesh cell of the node polynomial ω_n(u) = Π_j (u − u_j) of n-point
# Lagrange interpolation (nodes u_j at the integers around u), rounded to three
# digits as torch-pme 0.5 uses them; index n - 1
_RMS_NODE_POLYNOMIAL = [None, None, 0.246, 0.404, 0.950, 2.51, 8.42]


class PMEErrorBounds(MeshBounds):
    """torch-pme 0.5's error bound of particle-mesh Ewald (compatible numbers).

    With ``n`` interpolation nodes, ``α = 1/(√2 σ)``, the per-axis spacing
    ``H_d = L_d/(2L_d/h + 1)`` and ``H = (H_0 H_1 H_2)^{1/3}``:

    .. math::

        ΔF_k = \\frac{2Q^2}{\\sqrt{N}} \\frac{π^{1/4}}{V^{2/3}}
               \\sqrt{\\frac{6α}{2n+1}} \\frac{(\\sqrt{2} H/σ)^n}{n!}
               e^{n(\\ln(n/2) − 1)/2}\\, \\mathrm{RMS}_n,

    with ``RMS_n`` the RMS of the Lagrange node polynomial (0.246, 0.404, 0.950,
    2.51, 8.42 for n = 3 … 7), combined with the real-space term of
    :class:`~torchpme.tuning.ewald.EwaldErrorBounds` as ``√(ΔF_real² + ΔF_k²)``.
    Forces by automatic differentiation of the interpolation converge as
    ``H^{n−1}``, not ``H^n``, so measured errors exceed this bound (by up to ~60×
    on fine meshes); :func:`tune_pme` selects with :class:`PMEErrorEstimate`.

    Args:
        charges: ``(N, C)`` charges.
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` positions.

    Example:
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0, 0], [0.4, 0.4, 0.4]], dtype=torch.float64)
        >>> bounds = PMEErrorBounds(charges, torch.eye(3, dtype=torch.float64), positions)
        >>> round(float(bounds.error(4.4, 1.0, 0.5, 3)), 4)
        0.0011
    """

    def err_kspace(
        self,
        smearing: torch.Tensor,
        mesh_spacing: torch.Tensor,
        interpolation_nodes: torch.Tensor,
    ) -> torch.Tensor:
        """The reciprocal-space term ``ΔF_k`` (``interpolation_nodes`` in 3 … 7)."""
        nodes = check_nodes(interpolation_nodes, 3, 7)
        n = self._as_tensor(float(nodes))
        h = self.mean_spacing(mesh_spacing)
        alpha = 1.0 / 2.0**0.5 / smearing
        factorial = torch.exp(torch.lgamma(n + 1))
        return (
            self.prefac
            * math.pi**0.25
            * torch.sqrt(6.0 * alpha / (2.0 * n + 1.0))
            / self.volume ** (2.0 / 3.0)
            * (2.0**0.5 * h / smearing) ** n
            / factorial
            * torch.exp(n * (torch.log(n / 2.0) - 1.0) / 2.0)
            * _RMS_NODE_POLYNOMIAL[nodes - 1]
        )

    def error(
        self,
        cutoff: float,
        smearing: float,
        mesh_spacing: float,
        interpolation_nodes: float,
    ) -> torch.Tensor:
        """``√(ΔF_real² + ΔF_k²)``, a 0-dim tensor in the dtype of the charges.

        Args:
            cutoff: real-space cutoff ``r_c``.
            smearing: Gaussian smearing ``σ``.
            mesh_spacing: ``h`` of :class:`~torchpme.PMECalculator`.
            interpolation_nodes: ``n``, 3 … 7.
        """
        return self._total(smearing, cutoff, mesh_spacing, interpolation_nodes)


class PMEErrorEstimate(MeshErrorEstimate):
    """RMS error of :class:`~torchpme.PMECalculator`, as the tuner uses it.

    The error of the pipeline as implemented (Lagrange interpolation on the mesh
    of :func:`~torchpme.lib.get_ns_mesh`, filter ``G(k)``, forces by automatic
    differentiation, including the mesh self-force) for charges at uncorrelated
    positions, from the Hockney–Eastwood error functional worked out in
    :mod:`torchpme.tuning._estimates`; plus the Kolafa–Perram real-space term;
    the same for the potentials ``V_i``. Returns
    ``safety · max(√(ΔF_real² + ΔF_k²), √(ΔV_real² + ΔV_k²))``.

    Reference: Deserno & Holm, J. Chem. Phys. 109, 7678 (1998),
    doi:10.1063/1.477414; Kolafa & Perram, Mol. Simul. 9, 351 (1992),
    doi:10.1080/08927029208049126.

    Args:
        charges, cell, positions: the system.
        safety: factor applied to the estimate.
    """

    calculator = PMECalculator
    weights = "Lagrange"
    node_range = (3, 7)

    def error(
        self,
        cutoff: float,
        smearing: float,
        mesh_spacing: float,
        interpolation_nodes: float,
        *,
        fixed_mesh: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """The estimated RMS error (times ``safety``), a 0-dim tensor.

        Args:
            cutoff: real-space cutoff ``r_c``.
            smearing: Gaussian smearing ``σ``.
            mesh_spacing: ``h`` of :class:`~torchpme.PMECalculator`.
            interpolation_nodes: ``n``, 3 … 7.
            fixed_mesh: mesh points per lattice vector, used instead of the size
                derived from ``mesh_spacing`` (as by the calculator).
        """
        return self._mesh_error(
            smearing, cutoff, mesh_spacing, interpolation_nodes, fixed_mesh
        )


def tune_pme(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    full_neighbor_list: bool = False,
    prefactor: float = 1.0,
    exponent: int = 1,
    nodes_lo: int = 3,
    nodes_hi: int = 7,
    mesh_lo: int = 2,
    mesh_hi: int = 7,
    accuracy: float = 1e-3,
    *,
    smooth_meshes: bool = False,
    smearing: Optional[float] = None,
    periodic: Optional[torch.Tensor] = None,
) -> Tuple[float, Dict[str, Any], float]:
    """Smearing, mesh spacing and nodes of the fastest PME meeting ``accuracy``.

    The smearing follows from the cutoff (real-space force error
    ``accuracy/2``, :meth:`~torchpme.tuning.tuner.TunerBase.estimate_smearing`).
    The candidates are ``n = nodes_lo … nodes_hi`` interpolation nodes and
    meshes of ``2^e`` points (``e = mesh_lo … mesh_hi``) along the shortest
    lattice vector, rated by :class:`PMEErrorEstimate` with the safety factor
    :data:`~torchpme.tuning.tuner.SAFETY`; of those meeting the accuracy only the
    smallest mesh for each node count can be fastest, and of these at most three,
    the cheapest by a cost model (``10·N·n³ + M log₂ M``), are timed.
    ``accuracy`` bounds the RMS errors of forces and potentials (see
    :mod:`torchpme.tuning.tuner`).

    **Smooth meshes.** :class:`~torchpme.PMECalculator` rounds the mesh derived
    from ``mesh_spacing`` up to a power of two along each lattice vector, which
    can nearly double each axis: a mesh up to 8× larger than the accuracy needs
    (e.g. 128³ where 72³ would do). With ``smooth_meshes=True`` the candidate
    sizes along the shortest vector are the 5-smooth integers ``2^a 3^b 5^c``
    (sizes FFT libraries handle efficiently) between ``2^mesh_lo``
    and ``2^mesh_hi``, the other axes get the smallest 5-smooth size for the same
    spacing, and the estimates, pruning and timing see those sizes. The result
    then carries them as ``fixed_mesh``, so ``PMECalculator(potential,
    **params)`` builds the tuned mesh. The default (``False``) gives exactly the
    power-of-two search of torch-pme 0.5.

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
        nodes_lo, nodes_hi: range of interpolation nodes (3 … 7).
        mesh_lo, mesh_hi: range of the mesh exponent ``e`` (1 … 10).
        accuracy: target RMS force error (a Python float > 0).
        smearing: tune the reciprocal-space parameters for this smearing
            (kept and returned) instead of the one derived from the cutoff.
        smooth_meshes: also choose mesh sizes that are not powers of two (see
            above); the parameters then include ``fixed_mesh``.
        periodic: ``(3,)`` bools: tune a cluster (all ``False``), a wire (one
            ``True``) or a slab (two; the parameters then include
            ``slab_method="exact"``) as the calculator computes them, rated on
            a periodic cell with as much vacuum as their doubled meshes
            (:mod:`torchpme.tuning._open`); ``cell`` needs only its periodic
            rows. Not with ``smooth_meshes``.

    Returns:
        ``(smearing, {"interpolation_nodes": n, "mesh_spacing": h}, seconds per
        call)``, with ``"fixed_mesh": [n_0, n_1, n_2]`` added when
        ``smooth_meshes`` is set. If no candidate meets the accuracy a
        ``UserWarning`` is emitted and the candidate with the smallest error
        estimate is returned (its timing is ``inf``).

    Example:
        >>> smearing, params, timing = tune_pme(  # doctest: +SKIP
        ...     charges, cell, positions, 5.0, indices, distances, accuracy=1e-4)
        >>> calculator = PMECalculator(CoulombPotential(smearing), **params)  # doctest: +SKIP
    """
    return grid_search(
        mesh_grid(PMEErrorEstimate, nodes_lo, nodes_hi, mesh_lo, mesh_hi, smooth_meshes),
        charges, cell, positions, cutoff, neighbor_indices, neighbor_distances,
        full_neighbor_list, prefactor, exponent, accuracy, smearing, periodic,
    )  # fmt: skip
