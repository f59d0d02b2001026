"""Independent NumPy reference: the 1-D periodic (wire) Ewald sum.

Nothing here imports torchpme. Written from the formulas of

* M. Porto, "Ewald summation of electrostatic interactions of systems with
  finite extent in two of three dimensions", J. Phys. A 33, 6211 (2000),
  doi:10.1088/0305-4470/33/35/309,
* S. Tyagi, "Ewald summation techniques in one dimension", J. Chem. Phys. 120,
  1526 (2004), doi:10.1063/1.1633549,

in float64, for point charges with the bare interaction 1/r (prefactor 1),
periodic along one lattice vector a (any 3-D vector) and open in the two
directions transverse to it.

Notation: L = |a|, a_hat = a / L; for a pair (i, j), z_ij = (r_i - r_j).a_hat
and rho_ij is the transverse part of r_i - r_j (rho = |rho_ij|); m runs over the
integers and k = 2 pi m / L. The potential at charge i is

    phi_i = sum_j sum'_m erfc(alpha |r_ij + m a|) / |r_ij + m a|
            (the term j = i, m = 0 left out)
          + sum_j sum_{k != 0} cos(k z_ij) F_k(rho_ij)
          + sum_j F_0(rho_ij)
          - 2 alpha / sqrt(pi) q_i,

the j = i terms of the two smooth sums included (the self term takes them back
out), with

    F_k(rho) = (1/L) int_0^{alpha^2} du/u exp(-u rho^2 - k^2 / (4u))
    F_0(rho) = -(1/L) [Ein(alpha^2 rho^2) - gamma - ln(alpha^2 L^2)],
    Ein(x) = int_0^x (1 - e^{-t}) / t dt = E1(x) + ln x + gamma.

Derivation: erf(alpha r)/r = (2/sqrt(pi)) int_0^alpha exp(-t^2 r^2) dt, and the
Poisson sum sum_m exp(-t^2 (z + m L)^2) = sqrt(pi)/(t L) sum_k exp(-k^2/(4t^2))
cos(k z) turn the image sum of erf(alpha r)/r into (1/L) sum_k cos(k z)
int_0^{alpha^2} du/u exp(-u rho^2 - k^2/(4u)) (u = t^2). For k = 0 the integral
diverges logarithmically at u -> 0; F_0 is that integral minus an infinite,
alpha-independent constant (d F_0 / d alpha = (2/(alpha L)) exp(-alpha^2 rho^2),
the same as the divergent integral's), chosen so that for rho -> infinity
F_0 -> -(2/L) ln(rho / L): the potential of a uniform line charge, zero at
rho = L. Therefore potentials, energy and forces do not depend on alpha, for a
charged cell too (no extra term; the tests check it). Equivalently, the pair term
is the regularised image sum

    psi(rho, z) = lim_M [ sum_{|m| <= M} 1/|r + m a| - (2/L) ln(2M) ]
                = -(2/L) ln(rho/L) + (4/L) sum_{k > 0} K0(k rho) cos(k z)
                = -(1/L) [digamma(t) + digamma(1 - t) + 2 ln 2]  (rho = 0,
                  t = |z|/L in (0, 1)),

and a lone charge q has E = q^2 (gamma - ln 2) / L (all checked by the tests). As alpha -> infinity,
L F_k(rho) -> 2 K0(|k| rho). F_k is the incomplete Bessel function
(Harris's K_0(x, y) = int_1^inf dt/t exp(-x t - y/t)) with x = k^2/(4 alpha^2),
y = alpha^2 rho^2; at rho = 0 it is E1(k^2 / (4 alpha^2)) / L.

The energy is E = 1/2 sum_i q_i phi_i and the forces F_i = -dE/dr_i are the
analytic derivatives of the same sums:

    d F_k / d rho = -(2 rho / L) int_0^{alpha^2} du exp(-u rho^2 - k^2/(4u)),
    d F_0 / d rho = -(2 / (L rho)) (1 - exp(-alpha^2 rho^2)).

Quadrature of F_k: with u = alpha^2 e^s (s <= 0), L F_k = I0(x, y) and
int_0^{alpha^2} du exp(...) = alpha^2 I1(x, y), where

    I0 = int_{-inf}^0 ds exp(-y e^s - x e^{-s}),
    I1 = int_{-inf}^0 ds e^s exp(-y e^s - x e^{-s}).

In s the integrand varies on a scale of order one whatever x and y (the narrowest
feature, the peak at e^s = sqrt(x/y), has width (x y)^(-1/4) and height
exp(-2 sqrt(x y)), so it is either wide or negligible). The range is cut at
s_lo = ln(x / 80) (below it the integrand is < exp(-80 e^{s_lo - s}), the whole
neglected tail is < e^-80 / 80) and integrated by composite Gauss-Legendre,
16 nodes on each panel of width <= 1/2. Checked against scipy.integrate.quad
(epsrel 2e-14; largest deviation 1.7e-15 relative for 1e-3 <= x <= 45,
0 <= y <= 200), E1 and E2 (y = 0), the identity I0(x, y) + I0(y, x) =
2 K0(2 sqrt(x y)) (2.6e-15), the alpha -> infinity limits 2 K0(k rho) and
(k / rho) K1(k rho), and spot-checked against mpmath at 25 digits (the tests do
the scipy checks).

Ein(x) is summed as its power series sum_{n>=1} (-1)^(n+1) x^n / (n n!) for
x < 2 (no cancellation against ln x) and as E1(x) + ln x + gamma above.

Cutoffs: with X^2 = -ln(accuracy) + 2, the real-space sum keeps every image with
|z_ij + m L| <= X / alpha (r_i - r_j first wrapped by a multiple of a so that
z_ij lies in [-L/2, L/2]) and the k-space sum every k with |k| <= 2 alpha X; both
neglected tails are ~ exp(-X^2) (F_k(0) = E1(k^2/(4 alpha^2)) / L bounds
F_k(rho)). The default alpha = sqrt(pi)/L
keeps both sums short (|m| <= 4 images and 3 positive k at accuracy 1e-14).
Everything is pairwise and vectorised: O(N^2 (images + k * nodes)) time.
"""

import math

import numpy as np
from scipy.special import erfc, exp1

__all__ = ["ein", "incomplete_bessel", "wire_ewald"]

_EULER_GAMMA = 0.57721566490153286061
_X_TAIL = 80.0  # the quadrature drops the part where x e^{-s} > _X_TAIL
_PANEL = 0.5
_GL_T, _GL_W = np.polynomial.legendre.leggauss(16)


def ein(x):
    """Ein(x) = int_0^x (1 - e^{-t}) / t dt = E1(x) + ln x + gamma, x >= 0."""
    x = np.asarray(x, dtype=np.float64)
    small = x < 2.0
    xs = np.where(small, x, 0.0)
    # Horner form of sum_{n=1}^{N} (-1)^(n+1) x^n / (n n!)
    series = np.zeros_like(xs)
    for n in range(40, 0, -1):
        series = xs * (1.0 / (n * math.factorial(n)) * (-1.0) ** (n + 1) + series)
    xl = np.where(small, 2.0, x)
    large = exp1(xl) + np.log(xl) + _EULER_GAMMA
    return np.where(small, series, large)


def panel_nodes(x, tail=_X_TAIL):
    """Composite Gauss-Legendre nodes s and weights on [s_lo(x), 0], dropping the
    part where x e^{-s} > tail."""
    s_lo = min(math.log(x / tail), -_PANEL)
    n_panels = math.ceil(-s_lo / _PANEL)
    edges = np.linspace(s_lo, 0.0, n_panels + 1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * (edges[1:] - edges[:-1])
    s = (mid[:, None] + half[:, None] * _GL_T).ravel()
    w = (half[:, None] * _GL_W).ravel()
    return s, w


def incomplete_bessel(x, y):
    """(I0, I1) for one x > 0 and an array y >= 0:

    I0 = int_1^inf dt/t   exp(-x t - y/t) = int_{-inf}^0 ds     exp(-y e^s - x e^-s)
    I1 = int_1^inf dt/t^2 exp(-x t - y/t) = int_{-inf}^0 ds e^s exp(-y e^s - x e^-s)

    (I1 = -dI0/dy). For the wire, x = k^2/(4 alpha^2), y = alpha^2 rho^2,
    F_k = I0 / L and int_0^{alpha^2} du exp(-u rho^2 - k^2/(4u)) = alpha^2 I1.
    """
    x = float(x)
    if not x > 0.0:
        raise ValueError("x must be positive")
    s, w = panel_nodes(x)
    es = np.exp(s)
    y = np.asarray(y, dtype=np.float64)
    g = np.exp(-y[..., None] * es - x / es)
    return g @ w, g @ (w * es)


def wire_ewald(positions, charges, axis_vector, alpha=None, accuracy=1e-14):
    """Wire (1-D periodic, open transversally) Ewald sum of point charges, 1/r.

    Parameters
    ----------
    positions : (N, 3) array of Cartesian positions
    charges : (N,) array of charges (any net charge)
    axis_vector : the lattice vector a (3-D, any direction)
    alpha : Ewald splitting parameter (inverse length); default sqrt(pi) / L
    accuracy : the neglected Gaussian tails are ~ accuracy (relative)

    Returns
    -------
    (energy, potentials, forces): energy = 1/2 sum_i q_i phi_i, the potentials
    phi_i (N,), and the forces (N, 3) = -dE/dr_i.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(charges, dtype=np.float64).reshape(-1)
    if q.shape[0] != pos.shape[0]:
        raise ValueError("positions and charges disagree in length")
    n_atoms = pos.shape[0]
    a = np.asarray(axis_vector, dtype=np.float64).reshape(3)
    length = float(np.linalg.norm(a))
    if not length > 0.0:
        raise ValueError("the axis vector must be nonzero")
    a_hat = a / length
    if alpha is None:
        alpha = math.sqrt(math.pi) / length
    alpha = float(alpha)
    if not alpha > 0.0:
        raise ValueError("alpha must be positive")
    if not (0.0 < accuracy < 1.0):
        raise ValueError("accuracy must lie in (0, 1)")
    x_cut = math.sqrt(-math.log(accuracy) + 2.0)
    sqrt_pi = math.sqrt(math.pi)

    # pair separations: axial part z and transverse part rho
    d = pos[:, None, :] - pos[None, :, :]  # (N, N, 3), r_i - r_j
    # the vector is wrapped first (d - n a): its transverse part then carries no
    # spurious axial component ~ z (1 - |a_hat|^2), which 1/r^3 would amplify for
    # a pair close to an image of the other ion
    d = d - np.round((d @ a_hat) / length)[..., None] * a
    z = d @ a_hat  # (N, N), in [-L/2, L/2] up to rounding
    rho_v = d - z[..., None] * a_hat
    rho2 = np.einsum("ijc,ijc->ij", rho_v, rho_v)

    # ---- real space: all images with |z + m L| <= r_cut ----
    r_cut = x_cut / alpha
    n_img = math.ceil(r_cut / length + 0.5)
    m = np.arange(-n_img, n_img + 1, dtype=np.float64)
    zm = z[..., None] + m * length  # (N, N, M)
    r = np.sqrt(rho2[..., None] + zm * zm)
    skip = np.eye(n_atoms, dtype=bool)[:, :, None] & (m == 0.0)[None, None, :]
    r = np.where(skip, np.inf, r)
    ec = erfc(alpha * r)
    phi_pair = np.sum(ec / r, axis=2)  # (N, N)
    # (d/dr [erfc(alpha r)/r]) / r: the gradient is this times the image vector
    dfr = -(ec / r + 2.0 * alpha / sqrt_pi * np.exp(-((alpha * r) ** 2))) / (r * r)
    grad_pair = (
        np.sum(dfr, axis=2)[..., None] * rho_v
        + np.sum(dfr * zm, axis=2)[..., None] * a_hat
    )

    # ---- reciprocal space, k != 0 (k > 0, doubled for -k) ----
    y = alpha * alpha * rho2  # (N, N)
    k_cut = 2.0 * alpha * x_cut
    n_k = math.floor(k_cut * length / (2.0 * math.pi))
    for mk in range(1, n_k + 1):
        k = 2.0 * math.pi * mk / length
        i0, i1 = incomplete_bessel(k * k / (4.0 * alpha * alpha), y)
        c, s = np.cos(k * z), np.sin(k * z)
        phi_pair = phi_pair + (2.0 / length) * c * i0
        # grad of cos(kz) F_k(rho): -k sin(kz) F_k a_hat - cos(kz) (2/L) G_k rho_v
        grad_pair = (
            grad_pair
            - ((2.0 / length) * k * s * i0)[..., None] * a_hat
            - ((4.0 / length) * alpha * alpha * c * i1)[..., None] * rho_v
        )

    # ---- k = 0: the line-charge term ----
    phi_pair = phi_pair - (ein(y) - _EULER_GAMMA - math.log((alpha * length) ** 2)) / (
        length
    )
    # (1 - e^{-y}) / y, = 1 at y = 0
    ratio = np.where(y > 0.0, -np.expm1(-y) / np.where(y > 0.0, y, 1.0), 1.0)
    grad_pair = grad_pair - ((2.0 * alpha * alpha / length) * ratio)[..., None] * rho_v

    potentials = phi_pair @ q - 2.0 * alpha / sqrt_pi * q
    energy = 0.5 * float(q @ potentials)
    forces = -q[:, None] * np.einsum("ijc,j->ic", grad_pair, q)
    return energy, potentials, forces
