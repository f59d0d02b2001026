"""Charge equilibration: the charges that minimise a second-order energy model.

.. math::

    E(q) = \\sum_i χ_i q_i + \\tfrac12 \\sum_i J_i q_i² + E_C(q)
    \\quad\\text{subject to}\\quad \\sum_i q_i = Q,

with electronegativities ``χ``, hardnesses ``J > 0`` and ``E_C`` the Coulomb energy
of Gaussian charges of widths ``σ`` (:func:`torchpme.gaussian.gaussian_potentials`:
any calculator, periodic or not). ``E_C = ½ qᵀAq`` is quadratic, so the minimum
solves ``χ + (diag J + A) q = μ 1`` with the multiplier ``μ`` fixed by the total
charge. ``H = diag J + A`` is applied without being formed (``A q = 2V(q)``: one
calculator call for both columns of the solves ``H s = −χ``, ``H t = 1``, as two
charge channels), by conjugate gradients preconditioned with ``1/J``; then
``q = s + t (Q − Σs)/Σt``.

Gradients with respect to ``χ``, ``J``, ``σ``, positions, cell and the distances are
those of the implicit function (one adjoint solve with the same operator, no
unrolled iterations): with ``r(q, θ) = χ + Hq``, ``dq = −P r_θ`` where ``P`` is the
inverse of ``H`` on the charges of zero sum. First derivatives; a loss on forces
computed from these charges needs second derivatives, which this does not provide.

Reference: Rappé & Goddard, J. Phys. Chem. 95, 3358 (1991),
doi:10.1021/j100161a070; Ko et al., Nat. Commun. 12, 398 (2021),
doi:10.1038/s41467-020-20427-2.
"""

from typing import Callable, NamedTuple, Optional

import torch

from ._core.validation import check_finite, check_like, check_shape, message
from .gaussian import gaussian_potentials

__all__ = ["Equilibrated", "equilibrate"]


class Equilibrated(NamedTuple):
    """What :func:`equilibrate` returns."""

    #: ``(N,)`` equilibrated charges, differentiable (implicit function)
    charges: torch.Tensor
    #: ``(2, N)`` solutions of ``H s = −χ`` and ``H t = 1``: ``initial`` of the next
    #: call (MD warm start)
    solves: torch.Tensor
    #: conjugate-gradient iterations of the two solves
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
    total_charge: float = 0.0,
    periodic: Optional[torch.Tensor] = None,
    initial: Optional[torch.Tensor] = None,
    tolerance: Optional[float] = None,
    max_iterations: int = 1000,
) -> Equilibrated:
    """The equilibrated charges ``(N,)`` of one system.

    Args:
        calculator: a calculator with a :class:`~torchpme.CoulombPotential`.
        electronegativity: ``(N,)`` ``χ_i``.
        hardness: ``(N,)`` ``J_i > 0``.
        widths: ``(N,)`` Gaussian widths ``σ_i > 0``.
        cell, positions, neighbor_indices, neighbor_distances, periodic: the
            system, as for :func:`~torchpme.gaussian.gaussian_potentials`.
        total_charge: ``Q``.
        initial: ``(2, N)`` a previous result's ``solves``, to start from (MD
            warm start).
        tolerance: relative residual ``‖r‖/‖b‖`` to reach in each solve (default
            1e-10 in float64, 1e-5 in float32).
        max_iterations: conjugate-gradient iterations allowed per solve.

    Returns:
        :class:`Equilibrated`: the ``(N,)`` charges summing to ``total_charge``,
        the solves for a warm start, the iterations used.

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
    for name, value in (
        ("electronegativity", electronegativity),
        ("hardness", hardness),
        ("widths", widths),
    ):
        check_shape(name, value, [n], "(N,) with N atoms")
        check_like(name, value, positions, "positions")
        check_finite(name, value)
    if not bool((hardness > 0).all()):
        raise ValueError(message("hardness", "> 0", "values <= 0"))
    if initial is not None:
        check_shape("initial", initial, [2, n], "(2, N) from a previous result")
    if tolerance is None:
        tolerance = 1e-10 if positions.dtype == torch.float64 else 1e-5

    def operator(charges: torch.Tensor) -> torch.Tensor:
        """``H`` on columns ``(N, C)``, with everything but the charges fixed."""
        potential = gaussian_potentials(
            calculator,
            charges,
            widths.detach(),
            cell.detach(),
            positions.detach(),
            neighbor_indices,
            neighbor_distances.detach(),
            periodic,
        )
        return hardness.detach().unsqueeze(1) * charges + 2.0 * potential

    with torch.no_grad():
        right = torch.stack([-electronegativity, torch.ones_like(hardness)], dim=1)
        start = None if initial is None else initial.detach().T
        solves, iterations = _conjugate_gradients(
            operator, right, hardness.detach(), tolerance, max_iterations, start
        )
        s, t = solves[:, 0], solves[:, 1]
        multiplier = (total_charge - s.sum()) / t.sum()
        charges = s + multiplier * t

    # the implicit function: q = q* − P r(q*, θ), r = 0 at q* (value unchanged)
    fixed = charges.detach().unsqueeze(1)
    potential = gaussian_potentials(
        calculator, fixed, widths, cell, positions, neighbor_indices,
        neighbor_distances, periodic,
    )  # fmt: skip
    residual = electronegativity + hardness * charges + 2.0 * potential[:, 0]
    correction = _ProjectedSolve.apply(
        residual, operator, hardness.detach(), t, tolerance, max_iterations
    )
    return Equilibrated(charges - correction, solves.T.detach(), iterations)


class _ProjectedSolve(torch.autograd.Function):
    """``y = P x``: ``H⁻¹`` restricted to charges of zero sum (symmetric, so the
    backward is the same solve); ``H`` is held fixed (first derivatives)."""

    @staticmethod
    def forward(ctx, x, operator, diagonal, ones_solve, tolerance, max_iterations):
        ctx.saved = (operator, diagonal, ones_solve, tolerance, max_iterations)
        return _project(x, *ctx.saved)

    @staticmethod
    def backward(ctx, gradient):
        return _project(gradient, *ctx.saved), None, None, None, None, None


def _project(x, operator, diagonal, ones_solve, tolerance, max_iterations):
    with torch.no_grad():
        solved, _ = _conjugate_gradients(
            operator, x.unsqueeze(1), diagonal, tolerance, max_iterations, None
        )
        a = solved[:, 0]
        return a - ones_solve * a.sum() / ones_solve.sum()


def _conjugate_gradients(
    operator: Callable[[torch.Tensor], torch.Tensor],
    right: torch.Tensor,
    diagonal: torch.Tensor,
    tolerance: float,
    max_iterations: int,
    start: Optional[torch.Tensor],
):
    """Columns ``x`` of ``H x = b`` by preconditioned conjugate gradients (Jacobi
    preconditioner ``diagonal``), all columns at once; ``ValueError`` naming the
    residual when ``max_iterations`` do not reach ``tolerance``."""
    x = torch.zeros_like(right) if start is None else start.clone()
    residual = right - operator(x) if start is not None else right.clone()
    scale = torch.linalg.norm(right, dim=0).clamp_min(torch.finfo(right.dtype).tiny)
    inverse = (1.0 / diagonal).unsqueeze(1)
    z = inverse * residual
    direction = z.clone()
    rz = (residual * z).sum(dim=0)
    relative = torch.linalg.norm(residual, dim=0) / scale
    for iteration in range(max_iterations + 1):
        active = relative > tolerance
        if not bool(active.any()):
            return x, iteration
        if iteration == max_iterations:
            break
        applied = operator(direction)
        curvature = (direction * applied).sum(dim=0)
        # converged columns stay where they are
        step = torch.where(active, rz / torch.where(active, curvature, 1.0), 0.0)
        x = x + step * direction
        residual = residual - step * applied
        z = inverse * residual
        rz_next = (residual * z).sum(dim=0)
        ratio = torch.where(active, rz_next / torch.where(active, rz, 1.0), 0.0)
        direction = z + ratio * direction
        rz = rz_next
        relative = torch.linalg.norm(residual, dim=0) / scale
    raise ValueError(
        message(
            "max_iterations",
            f"enough for a relative residual of {tolerance:g}",
            f"{max_iterations} iterations leaving {relative.max().item():.3g} "
            "(is H positive definite? check hardness and widths)",
        )
    )
