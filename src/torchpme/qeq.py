"""Charge equilibration: the charges that minimise a second-order energy model.

.. math::

    E(q) = \\sum_i χ_i q_i + \\tfrac12 \\sum_i J_i q_i² + E_C(q)
    \\quad\\text{subject to}\\quad \\sum_{i ∈ f} q_i = Q_f \\text{ for each fragment } f,

with electronegativities ``χ``, hardnesses ``J > 0`` and ``E_C`` the Coulomb energy
of Gaussian charges of widths ``σ`` (:func:`torchpme.gaussian.gaussian_potentials`:
any calculator, periodic or not); one fragment (the whole system, total charge
``Q``) unless fragments (molecules) are given. ``E_C = ½ qᵀAq`` is quadratic, so the
minimum solves ``χ + Hq = Cᵀμ`` with ``H = diag J + A`` and the constraints ``Cq =
Q``. ``H`` is applied without being formed (``A q = 2V(q)``, one calculator call),
by conjugate gradients projected onto the constraints (Gould, Hribar & Nocedal,
SIAM J. Sci. Comput. 23, 1376 (2001), doi:10.1137/S1064827598345667) with the
Jacobi preconditioner ``1/J``: every iterate keeps each fragment's charge, whatever
the number of fragments, at one calculator call per iteration. Small systems
(``solver="auto"``) instead build ``A`` in one calculator call with a charge
channel per atom and solve the constraint system directly.

Gradients with respect to ``χ``, ``J``, ``σ``, positions, cell and the distances are
those of the implicit function (one adjoint solve with the same operator, no
unrolled iterations): with ``r(q, θ) = χ + Hq``, ``dq = −P r_θ`` where ``P`` is the
inverse of ``H`` on the charges that keep every fragment's sum. The solution enters
the graph through Newton steps ``q ← q − P̂ r(q, θ)`` that leave its value unchanged
(``r`` is in the range of the constraints there, which ``P`` removes), with ``P̂``
the projected solve at ``H`` held fixed: one step gives exact first derivatives, and
a second step on the first's output adds the missing ``−2P dH dq`` term, so the
charges are twice differentiable (forces from them in a training loss) at the price
of one more calculator call.

Reference: Rappé & Goddard, J. Phys. Chem. 95, 3358 (1991),
doi:10.1021/j100161a070; Ko et al., Nat. Commun. 12, 398 (2021),
doi:10.1038/s41467-020-20427-2.
"""

from typing import NamedTuple, Optional

import torch

from ._core import defaults
from ._core.solve import Fragments, Solver, attach
from ._core.validation import (
    check_choice,
    check_finite,
    check_like,
    check_shape,
    count_periodic,
    message,
)
from ._core.workload import memory_limit
from .gaussian import GaussianCharges, check_neutral, check_widths

__all__ = ["Equilibrated", "equilibrate"]


class Equilibrated(NamedTuple):
    """What :func:`equilibrate` returns."""

    #: ``(N,)`` equilibrated charges, differentiable (implicit function)
    charges: torch.Tensor
    #: conjugate-gradient iterations of the solve
    iterations: int


def equilibrate(
    calculator: torch.nn.Module,
    electronegativity: torch.Tensor,
    hardness: torch.Tensor,
    widths: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    total_charge=0.0,
    periodic: Optional[torch.Tensor] = None,
    fragments: Optional[torch.Tensor] = None,
    self_energy: bool = True,
    initial: Optional[torch.Tensor] = None,
    tolerance: Optional[float] = None,
    max_iterations: int = 1000,
    solver: str = "auto",
) -> Equilibrated:
    """The equilibrated charges ``(N,)`` of one system.

    Args:
        calculator: a calculator with a :class:`~torchpme.CoulombPotential`.
        electronegativity: ``(N,)`` ``χ_i``.
        hardness: ``(N,)`` ``J_i > 0``.
        widths: ``(N,)`` Gaussian widths ``σ_i > 0``.
        cell, positions, neighbor_indices, neighbor_distances, periodic: the
            system, as for :func:`~torchpme.gaussian.gaussian_potentials`.
        total_charge: ``Q``, a number; with ``fragments``, a number per fragment
            (``(F,)``, or one number for all).
        fragments: ``(N,)`` integer fragment (molecule) of each atom, ``0 … F−1``;
            None: the whole system is one fragment.
        self_energy: include the Gaussians' own Coulomb energy
            ``q_i²/(2√π σ_i)`` in ``E_C`` (``J`` is then the hardness beyond it).
            With it ``A`` is the Coulomb matrix of charge distributions, positive
            definite on neutral charges, so ``H`` is for any ``J ≥ 0``; without
            it, overlapping atoms can make ``H`` indefinite (the solve then
            fails naming its residual).
        initial: ``(N,)`` charges to start from, e.g. the previous MD step's (moved
            onto the constraints first).
        tolerance: relative residual ``‖P r‖/‖M⁻¹r₀‖`` to reach (``M = diag J``,
            ``r₀`` the residual of the cold start, whatever ``initial`` is;
            default 1e-8 in float64, 1e-5 in float32: tighter than the rounding
            of the operator, the iterations lose their conjugacy).
        max_iterations: conjugate-gradient iterations allowed.
        solver: ``"cg"`` (matrix-free, above), ``"dense"`` (the Coulomb matrix
            from one calculator call with ``N`` charge channels, then a direct
            solve of the constraint system, differentiated by autograd to any
            order; memory ``O(N·(N + P))``) or ``"auto"`` (dense up to
            ``torchpme._core.defaults.QEQ_DENSE_ATOMS`` atoms).

    Returns:
        :class:`Equilibrated`: the ``(N,)`` charges and the iterations used.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
        >>> chi = torch.tensor([0.2, -0.2])
        >>> hardness = torch.tensor([1.0, 1.0])
        >>> widths = torch.tensor([0.5, 0.5])
        >>> pairs = torch.tensor([[0, 1]])
        >>> q = equilibrate(Calculator(CoulombPotential()), chi, hardness, widths,
        ...                 torch.zeros(3, 3), positions, pairs, torch.tensor([1.5]))
        >>> abs(float(q.charges.sum())) < 1e-7, bool(q.charges[0] < 0)
        (True, True)
    """
    n = positions.shape[0]
    gaussians = GaussianCharges(calculator, self_energy)
    check_widths(widths, positions)
    for name, value in (
        ("electronegativity", electronegativity),
        ("hardness", hardness),
    ):
        check_shape(name, value, [n], "(N,) with N atoms")
        check_like(name, value, positions, "positions")
        check_finite(name, value)
    if not bool((hardness > 0).all()):
        raise ValueError(message("hardness", "> 0", "values <= 0"))
    groups = _fragments(fragments, n, positions.device)
    targets = _targets(total_charge, groups, positions)
    n_periodic = count_periodic(periodic)
    if n_periodic == 1 or n_periodic == 2:
        check_neutral(targets.sum(), torch.ones_like(targets[0]))
    if initial is not None:
        check_shape("initial", initial, [n], "(N,) charges")
    if tolerance is None:
        tolerance = 1e-8 if positions.dtype == torch.float64 else 1e-5
    check_choice("solver", solver, ["auto", "cg", "dense"])
    if solver == "dense" or (solver == "auto" and n <= defaults.QEQ_DENSE_ATOMS):
        hessian = _dense_hessian(
            gaussians, hardness, widths, cell, positions, neighbor_indices,
            neighbor_distances, periodic, n_periodic,
        )  # fmt: skip
        return Equilibrated(
            _dense_minimum(hessian, electronegativity, groups, targets), 0
        )
    diagonal = hardness.detach()

    def operator(charges: torch.Tensor) -> torch.Tensor:
        """``H q`` for ``(N,)`` charges, everything else held fixed."""
        potential = gaussians.potentials(
            charges.unsqueeze(1), widths.detach(), cell.detach(),
            positions.detach(), neighbor_indices, neighbor_distances.detach(),
            periodic, None, n_periodic,
        )  # fmt: skip
        return diagonal * charges + 2.0 * potential[:, 0]

    solve = Solver(
        operator, diagonal, groups, tolerance, max_iterations, "hardness",
        "large enough for a positive definite H = diag J + A",
    )  # fmt: skip
    with torch.no_grad():
        start = None if initial is None else initial.detach()
        charges, iterations = solve.minimum(electronegativity.detach(), targets, start)

    # the implicit function: q = q* − P̂ r(q*, θ), r = Cᵀμ at q* and P Cᵀ = 0, so
    # the value is unchanged and the derivative is −P r_θ; the second step
    # differentiates the first's output, which makes second derivatives exact
    inputs = (electronegativity, hardness, widths, cell, positions, neighbor_distances)
    tracked = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)

    def residual_of(q: torch.Tensor) -> torch.Tensor:
        potential = gaussians.potentials(
            q.unsqueeze(1), widths, cell, positions, neighbor_indices,
            neighbor_distances, periodic, None, n_periodic,
        )  # fmt: skip
        return electronegativity + hardness * q + 2.0 * potential[:, 0]

    charges = attach(charges, residual_of, solve, 2 if tracked else 1)
    return Equilibrated(charges, iterations)


def _dense_hessian(
    gaussians, hardness, widths, cell, positions, neighbor_indices,
    neighbor_distances, periodic, n_periodic,
) -> torch.Tensor:  # fmt: skip
    """``H = diag J + A`` ``(N, N)``: column ``j`` of ``A = 2V`` is the potential
    of a unit charge on atom ``j`` (charge channel ``j``), symmetrised."""
    n = positions.shape[0]
    pairs = neighbor_distances.shape[0]
    entries = n * (n + pairs)
    if entries * positions.element_size() * 4 > memory_limit():
        raise ValueError(
            message("solver", "'cg' for this system (the dense matrix's calculator "
                    "call holds N channels per atom and pair)",
                    f"'dense' with {n} atoms and {pairs} pairs")
        )  # fmt: skip
    identity = torch.eye(n, dtype=positions.dtype, device=positions.device)
    columns = gaussians.potentials(
        identity, widths, cell, positions, neighbor_indices, neighbor_distances,
        periodic, None, n_periodic,
    )  # fmt: skip
    return columns + columns.T + torch.diag(hardness)


def _dense_minimum(hessian, electronegativity, groups: Fragments, targets):
    """``q`` of ``[[H, −Cᵀ], [C, 0]] [q, μ] = [−χ, Q]``, after a check that ``H``
    is positive definite on the charges that keep the constraints."""
    n, count = hessian.shape[0], groups.count
    constraints = torch.zeros(count, n, dtype=hessian.dtype, device=hessian.device)
    constraints[groups.index, torch.arange(n, device=hessian.device)] = 1.0
    with torch.no_grad():
        # positive definite on the null space of C iff H + ρCᵀC is, for ρ large
        weight = hessian.abs().max() * n
        shifted = hessian + weight * constraints.T @ constraints
        if int(torch.linalg.cholesky_ex(shifted).info) != 0:
            raise ValueError(
                message("hardness", "large enough for a positive definite "
                        "H = diag J + A", "an indefinite H (dense solve)")
            )  # fmt: skip
    zeros = torch.zeros(count, count, dtype=hessian.dtype, device=hessian.device)
    kkt = torch.cat(
        [torch.cat([hessian, -constraints.T], 1), torch.cat([constraints, zeros], 1)]
    )
    right = torch.cat([-electronegativity, targets])
    return torch.linalg.solve(kkt, right)[:n]


def _fragments(fragments, n: int, device) -> Fragments:
    if fragments is None:
        return Fragments(torch.zeros(n, dtype=torch.int64, device=device), 1)
    check_shape("fragments", fragments, [n], "(N,) with N atoms")
    if fragments.is_floating_point() or fragments.is_complex():
        raise TypeError(message("fragments", "integers", f"{fragments.dtype}"))
    count = int(fragments.max()) + 1 if n else 0
    present = torch.zeros(count, dtype=torch.bool, device=device)
    present[fragments] = True
    if int(fragments.min()) < 0 or not bool(present.all()):
        raise ValueError(
            message("fragments", "every index in 0 … F−1 used", "gaps or negatives")
        )
    return Fragments(fragments.to(torch.int64), count)


def _targets(total_charge, groups: Fragments, positions) -> torch.Tensor:
    targets = torch.as_tensor(total_charge, dtype=positions.dtype).to(positions.device)
    if targets.dim() == 0:
        targets = targets.expand(groups.count)
    check_shape("total_charge", targets, [groups.count], "a number or (F,)")
    return targets.detach()
