"""The Fourier side of the error estimates: the Coulomb kernel in k-space, boxes
of lattice frequencies, separable contractions and the transforms of the 1-D
mesh weights (:class:`MeshWeight`) with their alias sums.

Everything here is NumPy in float64; the estimates built on it are described in
:mod:`torchpme.tuning._estimates`.
"""

import functools
import math
from typing import List, Tuple

import numpy as np

from .._core.weights import bspline_coefficients, lagrange_coefficients

# exp(-LOG_CUT) is the relative size of the kernel values that are dropped
LOG_CUT = 20.0
# self-force harmonics |P_d| <= _P_MAX
_P_MAX = 2
#: the harmonics ``P`` of the self terms, ``-_P_MAX … _P_MAX``
HARMONICS = list(range(-_P_MAX, _P_MAX + 1))

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def coulomb_kernel(k_sq: np.ndarray, smearing: float) -> np.ndarray:
    """``G(k) = 4π e^{−σ²k²/2}/k²`` at ``k² = k_sq``, and 0 at ``k = 0``."""
    safe = np.where(k_sq > 0, k_sq, 1.0)
    return np.where(
        k_sq > 0, 4.0 * math.pi * np.exp(-0.5 * smearing**2 * safe) / safe, 0.0
    )


def reciprocal(cell: np.ndarray) -> np.ndarray:
    """The reciprocal lattice vectors ``2π (cell⁻¹)ᵀ`` as rows."""
    return 2.0 * math.pi * np.linalg.inv(cell).T


def lattice_box(reach: List[int]) -> np.ndarray:
    """All integer triplets with ``|m_d| <= reach_d``, ``(M, 3)``."""
    axes = [np.arange(-r, r + 1) for r in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def contract(grid: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """``Σ_ijk grid[i,j,k] x[h,i] y[h',j] z[h'',k]`` for a real ``grid`` and
    ``(H, n)`` factors, one axis at a time; returns ``(Hx, Hy, Hz)``."""
    z = np.atleast_2d(z)
    if np.iscomplexobj(z):
        out = grid @ z.real.T + 1j * (grid @ z.imag.T)  # (I, J, Hz)
    else:
        out = grid @ z.T
    out = np.einsum("ijc,bj->ibc", out, np.atleast_2d(y))
    return np.einsum("ibc,ai->abc", out, np.atleast_2d(x))


class MeshWeight:
    """The 1-D weight ``w(t)`` of a node at distance ``t`` (mesh units) from an atom.

    Built from the per-node polynomials ``w_j(x)`` of :mod:`torchpme._core.weights`
    (``x`` the offset from the reference point, ``|x| ≤ 1/2``, node ``j`` at offset
    ``o_j = j − (n−1)/2``): ``w(t) = w_j(t + o_j)`` on ``[−o_j − 1/2, −o_j + 1/2]``,
    i.e. piece ``k = n − 1 − j`` of the unit intervals starting at ``−n/2``.
    """

    def __init__(self, method: str, n: int):
        if method == "Lagrange":
            table = lagrange_coefficients(n)
        else:
            table = bspline_coefficients(n)
        self.n = n
        values, derivatives = [], []
        for k in range(n):
            j = n - 1 - k
            offset = (2 * j - (n - 1)) / 2.0
            poly = np.polynomial.Polynomial([float(c) for c in table[j]])
            shifted = poly(np.polynomial.Polynomial([offset, 1.0]))
            values.append(np.pad(shifted.coef, (0, n - len(shifted.coef))))
            deriv = shifted.deriv().coef if n > 1 else np.zeros(1)
            derivatives.append(np.pad(deriv, (0, n - len(deriv))))
        # (n pieces, n powers), lowest power first
        self._coefficients = (np.array(values), np.array(derivatives))
        # Gauss–Legendre nodes on every piece: exact for these polynomial products
        starts = -n / 2.0 + np.arange(n)
        self._t = (starts[:, None] + 0.5 + 0.5 * _GL_NODES).reshape(-1)
        self._dt = np.tile(0.5 * _GL_WEIGHTS, n)
        self._lags = np.arange(-n, n + 1)
        w_t = self._value(self._t, False)
        shifted_t = self._t[None, :] + self._lags[:, None]
        f_w = self._value(shifted_t, False) * self._dt
        f_dw = self._value(shifted_t, True) * self._dt
        self._shifted = {}
        for p in HARMONICS:
            g = w_t * np.exp(-2j * math.pi * p * self._t)
            self._shifted[(p, False)] = f_w @ g
            self._shifted[(p, True)] = f_dw @ g
        self._bb = f_dw @ self._value(self._t, True)
        self._w_t = w_t * self._dt
        self._dw_t = self._value(self._t, True) * self._dt
        self._ends, self._end_derivatives = self._piece_ends()

    def _piece_ends(self) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """The ends ``e_m = −n/2 + m`` of the pieces and, for ``w`` and ``w'``, the
        jumps ``c[j, m]`` of the ``j``-th derivative at ``e_m`` (right piece minus
        left piece): the coefficients of :meth:`transform_far`."""
        n = self.n
        ends = -n / 2.0 + np.arange(n + 1)
        tables = []
        for table in self._coefficients:
            jumps = np.zeros((n + 1, n + 1))
            for piece in range(n):
                derivative = np.polynomial.Polynomial(table[piece])
                for j in range(n + 1):
                    jumps[j, piece] += derivative(ends[piece])
                    jumps[j, piece + 1] -= derivative(ends[piece + 1])
                    derivative = derivative.deriv()
            tables.append(jumps)
        return ends, (tables[0], tables[1])

    def _value(self, t: np.ndarray, derivative: bool) -> np.ndarray:
        """``w(t)`` or ``w'(t)`` (piecewise derivative), zero outside the support."""
        n = self.n
        piece = np.floor(t + n / 2.0).astype(np.int64)
        inside = (piece >= 0) & (piece < n)
        coefficients = self._coefficients[1 if derivative else 0][
            np.clip(piece, 0, n - 1)
        ]
        out = np.zeros_like(t)
        for power in range(n - 1, -1, -1):
            out = out * t + coefficients[..., power]
        return np.where(inside, out, 0.0)

    def transform(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``ŵ(θ)`` and ``ŵ'(θ)`` (transforms of ``w`` and of its piecewise derivative)."""
        phase = np.exp(-1j * np.multiply.outer(np.asarray(theta, dtype=float), self._t))
        return phase @ self._w_t, phase @ self._dw_t

    def alias_sums(self, theta: np.ndarray, harmonic: int = 0):
        """Alias sums at ``θ``: ``Σ_M ŵ_M ŵ_{M−P}^*``, ``Σ_M ŵ'_M ŵ_{M−P}^*`` and,
        for ``P = 0``, ``Σ_M |ŵ'_M|²`` (``P`` = ``harmonic``).

        By Poisson summation these are ``Σ_j c_j e^{−iθj}`` with the correlations
        ``c_j = ∫ f(s + j) w(s) e^{−2πiPs} ds`` (``f = w`` or ``w'``) as coefficients.
        """
        phases = np.exp(-1j * np.outer(theta, self._lags))
        ww = phases @ self._shifted[(harmonic, False)]
        dw = phases @ self._shifted[(harmonic, True)]
        dd = (phases @ self._bb).real if harmonic == 0 else None
        return ww, dw, dd

    def transform_far(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``ŵ(θ)`` and ``ŵ'(θ)`` for ``|θ| ≥ π`` in closed form: on each piece,
        ``∫_a^b p e^{−iθt} dt = [−e^{−iθt} Σ_j p^{(j)}(t)/(iθ)^{j+1}]_a^b``; summed
        over the pieces, ``Σ_j (iθ)^{−(j+1)} Σ_m c[j, m] e^{−iθ e_m}`` with the jumps
        ``c`` of :meth:`_piece_ends` (the quadrature of :meth:`transform` cannot
        follow many oscillations)."""
        flat = np.asarray(theta, dtype=float).reshape(-1)
        phases = np.exp(-1j * np.multiply.outer(flat, self._ends))
        powers = (1.0 / (1j * flat))[:, None] ** np.arange(1, self.n + 2)
        return tuple(
            np.sum((phases @ jumps.T) * powers, axis=1).reshape(np.shape(theta))
            for jumps in self._end_derivatives
        )

    def alias_scales(self) -> Tuple[float, float, float]:
        """The sums of the absolute values of the coefficients of the ``P = 0``
        alias sums of :meth:`alias_sums`: ``|ŵ|²``, ``ŵ'ŵ*`` and ``|ŵ'|²``."""
        return tuple(
            np.sum(np.abs(c))
            for c in (self._shifted[(0, False)], self._shifted[(0, True)], self._bb)
        )


@functools.cache
def mesh_weight(method: str, n: int) -> MeshWeight:
    """The :class:`MeshWeight` of ``method`` (``"Lagrange"`` or ``"P3M"``) with ``n``
    nodes, built once per process."""
    return MeshWeight(method, n)
