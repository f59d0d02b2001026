"""One-dimensional interpolation weights, derived from their definitions.

A particle at scaled fractional coordinate ``u`` along one mesh axis is assigned to
``n`` consecutive nodes. With ``x`` the offset of ``u`` from the reference point
(the nearest node for odd ``n``, the midpoint between the two nearest nodes for even
``n``), node ``j = 0 … n−1`` sits at offset ``o_j = j − (n − 1)/2`` from that
reference point, and its weight ``w_j(x)`` is a polynomial of degree ``n − 1`` in
``x``:

* Lagrange: the Lagrange basis polynomial of node ``j`` on the nodes ``o_0 … o_{n−1}``,
  ``w_j(x) = Π_{m≠j} (x − o_m) / (o_j − o_m)``;
* P3M: the centred cardinal B-spline of order ``n`` (Hockney & Eastwood's charge
  assignment function) at the node distance, ``w_j(x) = M_n(o_j − x)`` with
  ``M_n(t) = 1/(n−1)! Σ_{k=0}^{n} (−1)^k C(n, k) (t + n/2 − k)_+^{n−1}``. For
  ``|x| ≤ 1/2`` exactly the terms ``k ≤ j`` are non-zero.

The coefficients are computed exactly with rational arithmetic at construction time
and evaluated with Horner's rule (which keeps first and second derivatives clean).
"""

from fractions import Fraction
from math import comb, factorial
from typing import NamedTuple

import torch

__all__ = [
    "Scheme",
    "bspline_coefficients",
    "coefficient_table",
    "interpolation_scheme",
    "lagrange_coefficients",
    "moved",
]


def _poly_mul(a: list, b: list) -> list:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            out[i + j] += ai * bj
    return out


def _node_offsets(n: int) -> list:
    return [Fraction(2 * j - (n - 1), 2) for j in range(n)]


def lagrange_coefficients(n: int) -> list:
    """Exact coefficients ``c[j][k]`` of ``x**k`` in the Lagrange weight ``w_j``."""
    offsets = _node_offsets(n)
    table = []
    for j, oj in enumerate(offsets):
        poly, denominator = [Fraction(1)], Fraction(1)
        for m, om in enumerate(offsets):
            if m != j:
                poly = _poly_mul(poly, [-om, Fraction(1)])
                denominator *= oj - om
        table.append([c / denominator for c in poly])
    return table


def bspline_coefficients(n: int) -> list:
    """Exact coefficients ``c[j][k]`` of ``x**k`` in the B-spline weight ``w_j``."""
    table = []
    for j in range(n):
        poly = [Fraction(0)] * n
        for k in range(j + 1):
            # (c − x)^{n−1} with c = j + 1/2 − k, expanded binomially in x
            c = Fraction(2 * (j - k) + 1, 2)
            sign = (-1) ** k * comb(n, k)
            for i in range(n):
                poly[i] += sign * comb(n - 1, i) * c ** (n - 1 - i) * (-1) ** i
        table.append([p / factorial(n - 1) for p in poly])
    return table


def coefficient_table(method: str, n: int) -> torch.Tensor:
    """``(n, n)`` float64 tensor of weight coefficients, row ``j``, column = power."""
    if method == "Lagrange":
        table = lagrange_coefficients(n)
    elif method == "P3M":
        table = bspline_coefficients(n)
    else:
        raise ValueError(f"unknown interpolation method '{method}'")
    return torch.tensor([[float(c) for c in row] for row in table], dtype=torch.float64)


class Scheme(NamedTuple):
    """An interpolation scheme, built once and held by whoever interpolates.

    Attributes:
        method: ``"Lagrange"`` (Lagrange basis polynomials, smooth PME) or
            ``"P3M"`` (cardinal B-splines, Hockney & Eastwood's assignment).
        coefficients: ``(n, n)`` table of the ``n`` weight polynomials (row ``j``,
            column = power), from :func:`coefficient_table`.
    """

    method: str
    coefficients: torch.Tensor


def interpolation_scheme(method: str, n: int) -> Scheme:
    """The :class:`Scheme` of ``method`` on ``n`` nodes per axis (float64 table)."""
    return Scheme(method, coefficient_table(method, n))


def moved(scheme: Scheme, fn) -> Scheme:
    """``scheme`` with ``fn`` applied to its table (``nn.Module._apply``: the
    table follows a module's ``.to(device)``)."""
    return scheme._replace(coefficients=fn(scheme.coefficients))


def evaluate_weights(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Evaluate all ``n`` weight polynomials at the offsets ``x``.

    ``w_j(x) = Σ_p c[j, p] x^p`` by Horner's rule. Through plain autograd each of the
    ``n − 1`` Horner steps would keep its ``S + (n,)`` result for the backward pass
    (five ``(N, 3, 5)`` tensors for order 5: 150 MB at N = 262144); instead the
    backward evaluates the derivative polynomials, ``∂L/∂x = Σ_j ∂L/∂w_j · w_j'(x)``,
    with this same function, so derivatives of any order work.

    Args:
        x: offsets from the reference point, any shape ``S``.
        coefficients: ``(n, m)`` table, row ``j`` holding the coefficients of
            ``x⁰ … x^{m−1}`` (``(n, n)`` from :func:`coefficient_table`); its rows
            sum to a constant (a partition of unity), which the backward uses.

    Returns:
        Tensor of shape ``S + (n,)`` holding ``w_j(x)`` in its last axis.
    """
    c = coefficients.to(dtype=x.dtype, device=x.device)
    if torch.jit.is_scripting():
        return _horner(x, c)
    return _evaluate(x, c)


def _horner(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Horner's rule in differentiable operations (TorchScript)."""
    x = x.unsqueeze(-1)
    if c.shape[1] == 0:  # the derivative of a constant
        return torch.zeros_like(x).expand(x.shape[:-1] + (c.shape[0],))
    w = torch.zeros_like(x) + c[:, -1]
    for power in range(c.shape[1] - 2, -1, -1):
        w = w * x + c[:, power]
    return w


def _derivative(c: torch.Tensor) -> torch.Tensor:
    """Coefficients of the derivative polynomials: ``(n, m − 1)``."""
    if c.shape[1] < 2:  # constants: derivative zero, no coefficients
        return c[:, :0]
    powers = torch.arange(1, c.shape[1], dtype=c.dtype, device=c.device)
    return c[:, 1:] * powers


class _Weights(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, c):
        ctx.save_for_backward(x, c)
        x = x.unsqueeze(-1)
        shape = x.shape[:-1] + (c.shape[0],)
        if c.shape[1] < 2:  # constants (or the derivative of one)
            value = c[:, 0] if c.shape[1] == 1 else c.new_zeros(c.shape[0])
            return value.expand(shape).clone()
        w = c[:, -1].expand(shape).clone()
        for power in range(c.shape[1] - 2, 0, -1):
            w.mul_(x).add_(c[:, power])
        # the output comes from an out-of-place operation: under torch.compile a
        # Function returning an in-place result gets wrong gradients
        # (pytorch/pytorch#180642; see _core.shortrange)
        return torch.addcmul(c[:, 0], w, x)

    @staticmethod
    def backward(ctx, grad):
        x, c = ctx.saved_tensors
        slopes = _evaluate(x, _derivative(c))
        # the weights sum to one (and their derivatives to zero) for every x, so
        # Σ_j g_j w_j' = Σ_j (g_j − g_0) w_j': an upstream gradient equal on all
        # nodes (a uniform mesh, the total charge) then gives exactly zero, not a
        # rounding error that grows with |r| through the cell gradient
        return ((grad - grad[..., :1]) * slopes).sum(-1), None


@torch.jit.unused
def _evaluate(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return _Weights.apply(x, c)
