"""Natural cubic splines, their reciprocal-axis variant and their radial Fourier
transform (tabulated potentials and kernels)."""

import math
from typing import List, Optional

import torch

__all__ = [
    "CubicSpline",
    "CubicSplineReciprocal",
    "compute_second_derivatives",
    "compute_spline_ft",
]


def compute_second_derivatives(
    x_points: torch.Tensor, y_points: torch.Tensor
) -> torch.Tensor:
    """Second derivatives ``M_i`` of the natural cubic spline through the points.

    With ``h_i = x_{i+1} − x_i`` and slopes ``s_i = (y_{i+1} − y_i)/h_i``, continuity
    of the first derivative at the inner knots gives the tridiagonal system

    .. math::

        \\frac{h_{i−1}}{6} M_{i−1} + \\frac{h_{i−1} + h_i}{3} M_i
        + \\frac{h_i}{6} M_{i+1} = s_i − s_{i−1}, \\qquad i = 1 … n−2,

    with ``M_0 = M_{n−1} = 0`` (natural ends), solved by the Thomas algorithm
    (differentiable; works in the dtype and device of the inputs).

    Args:
        x_points: ``(n,)`` ascending knots, ``n >= 2``.
        y_points: ``(n,)`` values at the knots.

    Returns:
        ``(n,)`` second derivatives at the knots.
    """
    h = x_points[1:] - x_points[:-1]
    slopes = (y_points[1:] - y_points[:-1]) / h
    lower = h[:-1] / 6.0
    diagonal = (h[:-1] + h[1:]) / 3.0
    upper = h[1:] / 6.0
    rhs = slopes[1:] - slopes[:-1]
    # forward sweep over the inner rows; the first row is M_0 = 0
    zero = torch.zeros_like(y_points[0])
    c_prime: List[torch.Tensor] = [zero]
    d_prime: List[torch.Tensor] = [zero]
    for i in range(rhs.shape[0]):
        denominator = diagonal[i] - lower[i] * c_prime[-1]
        c_prime.append(upper[i] / denominator)
        d_prime.append((rhs[i] - lower[i] * d_prime[-1]) / denominator)
    # back substitution from the last row, M_{n-1} = 0
    result: List[torch.Tensor] = [zero]
    for i in range(len(d_prime) - 1, 0, -1):
        result.append(d_prime[i] - c_prime[i] * result[-1])
    result.append(zero)
    return torch.stack(result[::-1])


class CubicSpline(torch.nn.Module):
    """Natural cubic spline interpolation of tabulated points.

    On the interval ``[x_i, x_{i+1}]`` with ``h = x_{i+1} − x_i``,
    ``A = (x_{i+1} − x)/h`` and ``B = 1 − A``:

    .. math::

        S(x) = A \\left(y_i + (A^2 − 1) M_i \\frac{h^2}{6}\\right)
             + B \\left(y_{i+1} + (B^2 − 1) M_{i+1} \\frac{h^2}{6}\\right)

    with ``M`` from :func:`compute_second_derivatives`. Points outside the knots use
    the first or last cubic piece. The knots are buffers (``.to()`` moves them);
    evaluation happens in the dtype of the argument.

    Args:
        x_points: ``(n,)`` ascending knots, ``n >= 2``.
        y_points: ``(n,)`` values at the knots.
    """

    def __init__(self, x_points: torch.Tensor, y_points: torch.Tensor):
        super().__init__()
        # buffers follow .to(); not persistent, so that state dicts hold the same
        # keys as torch-pme's (whose splines keep plain tensors)
        second = compute_second_derivatives(x_points, y_points)
        self.register_buffer("x_points", x_points, persistent=False)
        self.register_buffer("y_points", y_points, persistent=False)
        self.register_buffer("d2y_points", second, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spline values at ``x`` (any shape; the result has the same shape)."""
        knots = self.x_points.to(x.dtype)
        values = self.y_points.to(x.dtype)
        second = self.d2y_points.to(x.dtype)
        i = torch.searchsorted(knots, x.contiguous(), right=True) - 1
        i = torch.clamp(i, 0, knots.shape[0] - 2)
        left = knots[i]
        h = knots[i + 1] - left
        a = (knots[i + 1] - x) / h
        b = (x - left) / h
        h2over6 = h * h / 6.0
        return a * (values[i] + (a * a - 1.0) * second[i] * h2over6) + b * (
            values[i + 1] + (b * b - 1.0) * second[i + 1] * h2over6
        )


class CubicSplineReciprocal(torch.nn.Module):
    """Cubic spline on the reciprocal axis ``1/x``, tending to 0 as ``x → ∞``.

    For ``x >= x_0`` the spline interpolates the points ``(1/x_i, y_i)`` together with
    ``(0, 0)``; for ``x < x_0`` a natural spline through ``(0, y(0))``,
    ``(x_0, y_0)`` and ``(x_1, y_1)`` is used, with ``y(0) = y_at_zero`` (default
    ``y_0``). Suited to potentials that decay at infinity.

    Args:
        x_points: ``(n,)`` ascending, strictly positive knots, ``n >= 2``.
        y_points: ``(n,)`` values at the knots.
        y_at_zero: 0-dim value at ``x = 0`` (default ``y_points[0]``).
    """

    def __init__(
        self,
        x_points: torch.Tensor,
        y_points: torch.Tensor,
        y_at_zero: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        zero = torch.zeros_like(x_points[:1])
        self._rev_spline = CubicSpline(
            torch.cat([zero, torch.flip(1.0 / x_points, [0])]),
            torch.cat([torch.zeros_like(y_points[:1]), torch.flip(y_points, [0])]),
        )
        if y_at_zero is None:
            y_at_zero = y_points[0]
        y_at_zero = torch.as_tensor(y_at_zero, dtype=y_points.dtype)
        self._zero_spline = CubicSpline(
            torch.cat([zero, x_points[:2]]),
            torch.cat([y_at_zero.reshape(1).to(y_points.device), y_points[:2]]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spline values at ``x`` (any shape; the result has the same shape)."""
        first = self._zero_spline.x_points[1].to(x.dtype)
        near = x < first
        far = torch.where(near, first, x)
        return torch.where(near, self._zero_spline(x), self._rev_spline(1.0 / far))


def _cosine_integral(x: torch.Tensor) -> torch.Tensor:
    """Ci(x) from SciPy, evaluated on the CPU and returned in ``x``'s dtype/device."""
    try:
        import scipy.special
    except ImportError as error:
        raise ImportError(
            "the spline Fourier kernel (compute_spline_ft, SplinePotential without "
            "`yhat_grid`) needs scipy: pip install scipy"
        ) from error
    values = scipy.special.sici(x.detach().cpu().numpy())[1]
    return torch.as_tensor(values, dtype=x.dtype, device=x.device)


def compute_spline_ft(
    k_points: torch.Tensor,
    x_points: torch.Tensor,
    y_points: torch.Tensor,
    d2y_points: torch.Tensor,
) -> torch.Tensor:
    """Radial Fourier transform of a natural cubic spline, with an analytic tail.

    .. math::

        \\hat f(k) = 4π \\int_0^∞ r f(r) \\frac{\\sin kr}{k} dr

    The cubic pieces on ``[x_0, x_{n−1}]`` are integrated exactly (a polynomial in
    ``k`` of degree 4 times ``k⁻⁶``, in nested form). Beyond ``r₀ = x_{n−1}`` the
    function is continued by the natural spline in ``1/r`` through ``(0, 0)``,
    ``(1/r₀, y_{n−1})``, ``(1/x_{n−2}, y_{n−2})``, i.e.
    ``f(r) ≈ y₀ r₀/r + M_t/(6 r₀²) (r₀³/r³ − r₀/r)``, whose Abel-regularised
    transform is ``T(k)/k²`` with

    .. math::

        T(k) = −\\frac{2π}{3 r₀} \\left[(M_t − 6 r₀² y₀) \\cos k r₀
               + M_t k r₀ (k r₀ \\,\\mathrm{Ci}(k r₀) − \\sin k r₀)\\right].

    At exactly ``k = 0`` the exact ``k → 0`` limit of the interval part is used and
    the tail is dropped. Needs SciPy for the cosine integral ``Ci``.

    Args:
        k_points: wave-vector norms, any shape.
        x_points: ``(n,)`` ascending knots (the computation runs in their dtype).
        y_points: ``(n,)`` values at the knots.
        d2y_points: ``(n,)`` spline second derivatives at the knots.

    Returns:
        ``f̂(k)``, shape and dtype of ``k_points``.
    """
    dtype = x_points.dtype
    k = k_points.reshape(-1, 1).to(dtype)
    at_zero = k == 0.0
    k = torch.where(at_zero, torch.ones_like(k), k)

    r = x_points[:-1]
    h = x_points[1:] - r
    y = y_points[:-1]
    dy = y_points[1:] - y
    m = d2y_points[:-1]
    dm = d2y_points[1:] - m

    c = torch.cos(k * r)
    s = torch.sin(k * r)
    sin_half = torch.sin(k * h / 2.0)
    c_diff = 2.0 * sin_half * torch.sin(k * (h / 2.0 + r))  # cos kr − cos k(r+h)
    s_diff = -2.0 * sin_half * torch.cos(k * (h / 2.0 + r))  # sin kr − sin k(r+h)
    order4 = 6.0 * c_diff * h * (h + r) * (dy + y) + c * (
        6.0 * h * r * y - 6.0 * h * (h + r) * (dy + y)
    )
    order3 = (
        h * (12.0 * dy + 3.0 * m * h * (h + 2.0 * r) + dm * h * (2.0 * h + 3.0 * r)) * s
        + s_diff
        * (
            -6.0 * dy * r
            - 3.0 * m * h * h * (h + r)
            - 2.0 * dm * h * h * (h + r)
            - 6.0 * h * (2.0 * dy + y)
        )
        + k * order4
    )
    order2 = (
        6.0 * c * h * (3.0 * m * h + dm * (2.0 * h + r))
        - 2.0
        * c_diff
        * (6.0 * dy + h * ((6.0 * m + 5.0 * dm) * h + 3.0 * (m + dm) * r))
        + k * order3
    )
    order1 = (
        6.0 * s_diff * (3.0 * m * h + dm * (4.0 * h + r))
        - 24.0 * dm * h * s
        + k * order2
    )
    polynomial = 24.0 * c_diff * dm + k * order1
    intervals = (2.0 * math.pi / 3.0) * torch.sum(polynomial / h, dim=1)

    limit = torch.sum(
        -h
        * math.pi
        * (
            3.0 * m * h * h * (3.0 * h * h + 10.0 * h * r + 10.0 * r * r)
            + dm * h * h * (5.0 * h * h + 16.0 * h * r + 15.0 * r * r)
            - 30.0
            * (
                6.0 * r * r * (dy + 2.0 * y)
                + 4.0 * h * r * (2.0 * dy + 3.0 * y)
                + h * h * (3.0 * dy + 4.0 * y)
            )
        )
        / 90.0
    )

    r0 = x_points[-1]
    y0 = y_points[-1]
    m_tail = compute_second_derivatives(
        torch.stack([torch.zeros_like(r0), 1.0 / r0, 1.0 / x_points[-2]]),
        torch.stack([torch.zeros_like(y0), y0, y_points[-2]]),
    )[1]
    kr = k[:, 0] * r0
    tail = (
        -2.0
        * math.pi
        * (
            (m_tail - 6.0 * r0 * r0 * y0) * torch.cos(kr)
            + m_tail * kr * (kr * _cosine_integral(kr) - torch.sin(kr))
        )
        / (3.0 * r0)
    )
    k = k[:, 0]
    result = torch.where(at_zero[:, 0], limit, intervals / k**6 + tail / (k * k))
    return result.reshape(k_points.shape).to(k_points.dtype)
