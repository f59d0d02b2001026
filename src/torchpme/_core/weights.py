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

import torch

__all__ = ["bspline_coefficients", "coefficient_table", "lagrange_coefficients"]


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


def evaluate_weights(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Evaluate all ``n`` weight polynomials at the offsets ``x``.

    Args:
        x: offsets from the reference point, any shape ``S``.
        coefficients: ``(n, n)`` table from :func:`coefficient_table`.

    Returns:
        Tensor of shape ``S + (n,)`` holding ``w_j(x)`` in its last axis.
    """
    c = coefficients.to(dtype=x.dtype, device=x.device)
    n = c.shape[0]
    x = x.unsqueeze(-1)
    w = torch.zeros_like(x) + c[:, n - 1]
    for power in range(n - 2, -1, -1):
        w = w * x + c[:, power]
    return w
