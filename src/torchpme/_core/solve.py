"""Linear solves over an operator: preconditioned conjugate gradients (projected
onto disjoint sum constraints) and their implicit derivatives.

What charge equilibration (:mod:`torchpme.qeq`) and induced polarisation
(:mod:`torchpme.polarisation`) share: the minimum of ``½xᵀHx + cᵀx``, ``H``
applied by calling a calculator, found by conjugate gradients (projected onto
the constraints: Gould, Hribar & Nocedal, SIAM J. Sci. Comput. 23, 1376 (2001),
doi:10.1137/S1064827598345667) with a Jacobi preconditioner, and attached to the
autograd graph by Newton steps ``x ← x − P̂ r(x, θ)`` (:func:`attach`): the value
is unchanged (``r`` is in the range of the constraints at the solution, which
``P`` removes), one step gives exact first derivatives ``−P r_θ`` and each further
step one more order.
"""

from typing import NamedTuple, Optional

import torch

from .validation import message

__all__ = ["Fragments", "ProjectedSolve", "Solver", "attach"]


class Fragments(NamedTuple):
    """The linear constraints ``Σ_{i∈f} q_i = Q_f`` of disjoint fragments."""

    #: ``(N,)`` fragment of each atom, ``0 … F−1``
    index: torch.Tensor
    #: ``F``
    count: int

    def sums(self, values: torch.Tensor) -> torch.Tensor:
        """``(F,)`` sums of ``(N,)`` values per fragment."""
        out = torch.zeros(self.count, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.index, values)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """``(N,)``: each atom's fragment value of ``(F,)`` values."""
        return values[self.index]


class Solver:
    """Preconditioned conjugate gradients for ``min ½xᵀHx + cᵀx``, projected onto
    disjoint sum constraints when there are any, and the (projected) inverse
    ``P`` of ``H`` they define.

    Args:
        operator: ``x ↦ Hx`` on ``(n,)`` vectors, ``H`` symmetric.
        diagonal: ``(n,)`` the Jacobi preconditioner ``M`` (> 0).
        groups: the :class:`Fragments` of the constraints, or None.
        tolerance: relative residual to reach.
        max_iterations: iterations allowed.
        argument: what the user changes when ``H`` is not positive definite
            (named in the errors), and ``hint`` what that means.
    """

    def __init__(
        self, operator, diagonal, groups: Optional[Fragments], tolerance,
        max_iterations, argument: str, hint: str,
    ):  # fmt: skip
        self.operator = operator
        self.inverse = 1.0 / diagonal
        self.groups = groups
        self.weights = None if groups is None else groups.sums(self.inverse)
        self.tolerance = tolerance
        self.max_iterations = max_iterations
        self.argument = argument
        self.hint = hint

    def reduce(self, v: torch.Tensor) -> torch.Tensor:
        """``v − Cᵀm`` with ``M⁻¹`` of it on the zero-sum charges (``M = diag
        J``): the same problem (``Cᵀm`` only moves the multipliers), without the
        part in the range of the constraints that would swamp the residual's
        dot products in rounding when it is large."""
        if self.groups is None:
            return v
        mean = self.groups.sums(self.inverse * v) / self.weights
        return v - self.groups.spread(mean)

    def feasible(self, targets: torch.Tensor, start) -> torch.Tensor:
        """``start`` (or zero) moved onto the constraints, along ``M⁻¹Cᵀ``."""
        q = torch.zeros_like(self.inverse) if start is None else start.clone()
        if self.groups is None:
            return q
        missing = (targets - self.groups.sums(q)) / self.weights
        return q + self.inverse * self.groups.spread(missing)

    def minimum(self, linear: torch.Tensor, targets: torch.Tensor, start=None):
        cold = self.feasible(targets, None)
        # from zero charges the residual is the linear term (no operator call)
        zero = not bool(targets.any())
        cold_residual = linear.clone() if zero else self.operator(cold) + linear
        if start is None:
            q, r = cold, cold_residual
        else:
            q = self.feasible(targets, start)
            r = self.operator(q) + linear
        # relative to the whole preconditioned residual of the cold start (a warm
        # start gains iterations, not accuracy): at the solution r is in the
        # range of the constraints (Cᵀμ), whose projection is only rounding
        first = torch.linalg.norm(self.inverse * cold_residual)
        r = self.reduce(r)
        g = self.inverse * r
        if not bool(torch.linalg.norm(g) > self.tolerance * first):
            return q, 0
        p = -g
        rg = torch.dot(r, g)
        for iteration in range(1, self.max_iterations + 1):
            hp = self.operator(p)
            curvature = torch.dot(p, hp)
            if not bool(curvature > 0):
                raise ValueError(
                    message(
                        self.argument,
                        self.hint,
                        f"a direction of curvature {float(curvature):.3g}",
                    )
                )
            step = rg / curvature
            q = q + step * p
            r = self.reduce(r + step * hp)
            g = self.inverse * r
            if bool(torch.linalg.norm(g) <= self.tolerance * first):
                return q, iteration
            rg_next = torch.dot(r, g)
            p = -g + (rg_next / rg) * p
            rg = rg_next
        raise ValueError(
            message(
                "max_iterations",
                f"enough for a relative residual of {self.tolerance:g}",
                f"{self.max_iterations} iterations leaving "
                f"{float(torch.linalg.norm(g) / first):.3g} (is H positive "
                f"definite? check {self.argument})",
            )
        )

    def apply_inverse(self, x: torch.Tensor) -> torch.Tensor:
        """``P x``: the ``y`` of zero sums with ``Hy − x`` orthogonal to them
        (``H⁻¹x`` without constraints)."""
        count = 0 if self.groups is None else self.groups.count
        zeros = torch.zeros(count, dtype=x.dtype, device=x.device)
        y, _ = self.minimum(-x, zeros)
        return y


class ProjectedSolve(torch.autograd.Function):
    """``y = P x`` with ``H`` held fixed; ``P`` is symmetric, so the backward is
    the same solve, itself differentiable (linear in the incoming gradient)."""

    @staticmethod
    def forward(ctx, x, solver):
        ctx.solver = solver
        with torch.no_grad():
            return solver.apply_inverse(x.detach())

    @staticmethod
    def backward(ctx, gradient):
        return ProjectedSolve.apply(gradient, ctx.solver), None


def attach(solution: torch.Tensor, residual_of, solver: Solver, steps: int):
    """``solution`` (found without a graph) on the graph of ``residual_of`` (``x
    ↦ r(x, θ)``), exact to derivatives of order ``steps``."""
    for _ in range(steps):
        solution = solution - ProjectedSolve.apply(residual_of(solution), solver)
    return solution
