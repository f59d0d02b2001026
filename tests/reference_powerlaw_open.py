"""Independent NumPy reference: lattice sums of 1/r^p, slabs and wires.

Nothing here imports torchpme. Written from the formulas below, in float64, for
point charges with the bare interaction v(r) = 1/r^p (prefactor 1) that are
periodic along two lattice vectors a1, a2 and open along the plane normal (a
slab, p > 2), or periodic along one lattice vector a and open across it (a
wire, p > 1). For these exponents the image sums converge absolutely, so any
net charge is allowed and no extra term appears. The potentials are

    phi_i = sum_j sum'_n q_j / |r_i - r_j + n|^p

(n over the lattice translations, the term j = i, n = 0 left out, the images of
atom i itself included), the energy E = 1/2 sum_i q_i phi_i and the forces
F_i = -dE/dr_i.

Splitting. With s = p / 2 and the Gamma-function integral

    1/r^p = (1/Gamma(s)) int_0^inf t^(s-1) exp(-r^2 t) dt,

split at t = alpha^2:

    short range  (1/Gamma(s)) int_{alpha^2}^inf ... = Q(s, alpha^2 r^2) / r^p,
    long range   (1/Gamma(s)) int_0^{alpha^2}  ... = P(s, alpha^2 r^2) / r^p,

Q = gammaincc and P = gammainc the regularised incomplete gamma functions. The
short-range part is summed over the real-space images; its radial derivative is
d/dr [Q(s, alpha^2 r^2) / r^p] = -p Q(s + 1, alpha^2 r^2) / r^(p+1) (from
d/dr of the t-integral: -2 r int t^s e^{-r^2 t} dt). The long-range part at
r = 0 is alpha^p / Gamma(s + 1): this self term, the value of the long-range
pair function for j = i, n = 0, is subtracted (-q_i alpha^p / Gamma(s + 1)).

Long range, slab. A = |a1 x a2|, unit normal nn = a1 x a2 / A; for a pair,
z = (r_i - r_j).nn and rho the in-plane part of r_i - r_j; k runs over the
reciprocal lattice of the plane, k.a_i in 2 pi Z. The 2-D Poisson sum

    sum_m exp(-t |rho + m|^2) = (pi / (A t)) sum_k exp(-k^2 / (4 t)) cos(k.rho)

turns the image sum of the long-range part into sum_k cos(k.rho) F(k, z),

    F(k, z) = pi / (A Gamma(s)) int_0^{alpha^2} t^(s-2) exp(-t z^2 - k^2/(4t)) dt,

convergent at t -> 0 for k = 0 because s > 1 (p > 2). d F / dz is the same with
t^(s-2) -> -2 z t^(s-1); the in-plane gradient is -sum_k sin(k.rho) k F.

Long range, wire. L = |a|, unit axis e = a / L; z = (r_i - r_j).e and rho the
transverse part (rho = |rho|); k = 2 pi m / L. The 1-D Poisson sum

    sum_m exp(-t (z + m L)^2) = sqrt(pi / t) / L sum_k exp(-k^2 / (4 t)) cos(k z)

gives sum_k cos(k z) F(k, rho),

    F(k, rho) = sqrt(pi) / (L Gamma(s)) int_0^{alpha^2} t^(s-3/2)
                exp(-t rho^2 - k^2/(4t)) dt,

convergent for k = 0 because s > 1/2 (p > 1); its gradient in the transverse
vector is the same with t^(s-3/2) -> -2 rho_vec t^(s-1/2).

The t-integrals. With t = alpha^2 u, int_0^{alpha^2} t^(nu-1) exp(-t Z^2 -
k^2/(4t)) dt = alpha^(2 nu) J(nu, x, y), x = k^2 / (4 alpha^2), y = alpha^2 Z^2,

    J(nu, x, y) = int_0^1 u^(nu-1) exp(-y u - x / u) du
                = int_{-inf}^0 exp(nu s - y e^s - x e^-s) ds     (u = e^s)

(nu = s - 1 for the slab, s - 1/2 for the wire, and nu + 1 for the gradients).
For x = 0 it is the lower incomplete gamma function, Gamma(nu) P(nu, y) / y^nu,
summed as its power series sum_n (-y)^n / (n! (nu + n)) for y < 1. For x > 0 it
is integrated in s on [ln(x / 100), 0] (below, the integrand is below
exp(-100 e^{ln(x/100) - s}) and the neglected tail below e^-100 / 100) by
composite 16-point Gauss-Legendre, panels of width <= 1/2. The integrand is
entire in s; in the strip |Im s| <= 1.2 its modulus is exp(nu Re s - cos(Im s)
(y e^s + x e^-s)) <= exp(nu Re s), as large as its scale on the real axis, so
on each panel (half-width <= 1/4, Bernstein ellipse of semi-minor axis 4.8,
parameter ~ 9.6) the rule converges like 9.6^-32 ~ 1e-31 relative to that
scale (alpha^(2 nu) for the sums): exact to rounding. The tests check J against
scipy.integrate.quad, the Bessel identity J(nu, x, y) + J(-nu, y, x) =
2 (x/y)^(nu/2) K_nu(2 sqrt(x y)), x^nu Gamma(-nu, x) at y = 0 and the erfc
closed form at nu = -1/2.

Cutoffs. With X^2 = max(Q^-1(s + 1, accuracy / 1000), -ln(accuracy) + 6), the
real-space sum keeps every image whose in-plane (slab) or axial (wire) distance
is up to X / alpha, and the reciprocal sum every k with |k| <= 2 alpha X: the
neglected real-space terms are below Q(s + 1, X^2) / r^p, the reciprocal ones
below ~ exp(-X^2) alpha^p. These bounds are loose (the image box and the
rounding up of the k range add margin): in the tests accuracy = 1e-4 already
agrees with 1e-13 to ~1e-12, and 1e-13 with 1e-17 to rounding. Defaults alpha = sqrt(pi / A) (slab) and
alpha = sqrt(pi) / L (wire) balance the two sums. Everything is pairwise and
vectorised: O(N^2 (images + k vectors x quadrature nodes)).

The tests (test_reference_powerlaw_open.py) check alpha-independence, a
smoothly truncated direct image sum with its continuum tail, finite-difference
forces, rotations and changes of lattice basis, and the closed forms
2 zeta(p) / L^p (a lone charge in a wire), the p = 2 wire pair sum
(pi / (L rho)) sinh(2 pi rho / L) / (cosh(2 pi rho / L) - cos(2 pi z / L)),
and the square and hexagonal lattice sums 4 zeta(s) beta(s) / a^p and
6 zeta(s) L_-3(s) / a^p (a lone charge in a slab).
"""

import math

import numpy as np
from reference_wire import panel_nodes
from scipy.special import gamma, gammainc, gammaincc, gammainccinv

__all__ = ["bessel_integral", "powerlaw_slab", "powerlaw_wire"]

_X_TAIL = 100.0  # the quadrature drops the part where x e^{-s} > _X_TAIL
_N_SERIES = 40  # terms of the power series of J(nu, 0, y), y < 1


def _lower_gamma_scaled(nu, y):
    """int_0^1 u^(nu-1) e^{-y u} du = Gamma(nu) P(nu, y) / y^nu, nu > 0, y >= 0."""
    small = y < 1.0
    ys = np.where(small, y, 0.0)
    series = np.zeros_like(ys)
    term = np.ones_like(ys)  # (-y)^n / n!
    for n in range(_N_SERIES):
        series = series + term / (nu + n)
        term = term * (-ys) / (n + 1)
    yl = np.where(small, 1.0, y)
    large = gamma(nu) * gammainc(nu, yl) / yl**nu
    return np.where(small, series, large)


def bessel_integral(nu, x, y):
    """(J(nu, x, y), J(nu + 1, x, y)) for scalars nu, x >= 0 and an array y >= 0:

        J(nu, x, y) = int_0^1 u^(nu-1) exp(-y u - x / u) du

    (an incomplete Bessel function). x = 0 needs nu > 0 (lower incomplete
    gamma function); x > 0 allows any real nu (Gauss-Legendre in s = ln u).
    """
    y = np.asarray(y, dtype=np.float64)
    x = float(x)
    nu = float(nu)
    if x < 0.0 or np.any(y < 0.0):
        raise ValueError("x and y must be >= 0")
    if x == 0.0:
        if not nu > 0.0:
            raise ValueError("J(nu, 0, y) diverges for nu <= 0")
        return _lower_gamma_scaled(nu, y), _lower_gamma_scaled(nu + 1.0, y)
    s, w = panel_nodes(x, _X_TAIL)
    es = np.exp(s)
    g = np.exp(nu * s - y[..., None] * es - x / es)
    return g @ w, g @ (w * es)


def _cutoff(s, accuracy):
    """X of the module docstring."""
    if not (0.0 < accuracy < 1.0):
        raise ValueError("accuracy must lie in (0, 1)")
    x2 = max(float(gammainccinv(s + 1.0, accuracy * 1e-3)), -math.log(accuracy) + 6.0)
    return math.sqrt(x2)


def _inputs(positions, charges):
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(charges, dtype=np.float64).reshape(-1)
    if q.shape[0] != pos.shape[0]:
        raise ValueError("positions and charges disagree in length")
    return pos, q


def _reduced_basis(a1, a2):
    """Lagrange-Gauss reduction: a short, nearly orthogonal basis of the same
    2-D lattice."""
    u = np.array(a1, dtype=np.float64).reshape(3)
    v = np.array(a2, dtype=np.float64).reshape(3)
    if u @ u > v @ v:
        u, v = v, u
    while True:
        v = v - np.round((u @ v) / (u @ u)) * u
        if v @ v >= u @ u:
            return u, v
        u, v = v, u


def _short_range(rv, p, s, alpha, skip):
    """Sum over the image axis of Q(s, alpha^2 r^2) / r^p and of its gradient,
    for separation vectors rv (N, N, M, 3); `skip` marks the excluded terms."""
    r2 = np.einsum("ijmc,ijmc->ijm", rv, rv)
    r2 = np.where(skip, 1.0, r2)
    r = np.sqrt(r2)
    ar2 = alpha * alpha * r2
    f = np.where(skip, 0.0, gammaincc(s, ar2) / r**p)
    # d/dr [Q(s, a^2 r^2) / r^p] / r
    dfr = np.where(skip, 0.0, -p * gammaincc(s + 1.0, ar2) / r ** (p + 2.0))
    return f.sum(axis=2), np.einsum("ijm,ijmc->ijc", dfr, rv)


def _assemble(q, phi_pair, grad_pair, alpha, p, s):
    potentials = phi_pair @ q - q * alpha**p / gamma(s + 1.0)
    energy = 0.5 * float(q @ potentials)
    forces = -q[:, None] * np.einsum("ijc,j->ic", grad_pair, q)
    return energy, potentials, forces


def powerlaw_slab(positions, charges, a1, a2, exponent, accuracy=1e-13, alpha=None):
    """Slab (2-D periodic, open along the normal) lattice sum of 1/r^p, p > 2.

    Parameters
    ----------
    positions : (N, 3) array of Cartesian positions
    charges : (N,) array of charges (any net charge)
    a1, a2 : the two in-plane lattice vectors (3-D, any orientation, any angle)
    exponent : p > 2 (the sum converges absolutely); ValueError otherwise
    accuracy : bound on the neglected tails, relative (loose; default 1e-13)
    alpha : splitting parameter (inverse length); default sqrt(pi / A)

    Returns
    -------
    (energy, potentials, forces): phi_i = sum_j sum'_n q_j / |r_i - r_j + n|^p
    (N,), energy = 1/2 sum_i q_i phi_i, and the forces (N, 3) = -dE/dr_i.
    """
    p = float(exponent)
    if not p > 2.0:
        raise ValueError(f"the slab sum of 1/r^p needs p > 2, got p = {p}")
    pos, q = _inputs(positions, charges)
    n_atoms = pos.shape[0]
    c = np.cross(np.asarray(a1, dtype=np.float64), np.asarray(a2, dtype=np.float64))
    area = float(np.linalg.norm(c))
    if not area > 0.0:
        raise ValueError("a1 and a2 must be linearly independent")
    a1, a2 = _reduced_basis(a1, a2)
    c = np.cross(a1, a2)  # the same area, the normal possibly flipped
    nn = c / area
    b1 = np.cross(a2, nn) / area  # b_i.a_j = delta_ij, in the plane
    b2 = np.cross(nn, a1) / area
    s = 0.5 * p
    alpha = math.sqrt(math.pi / area) if alpha is None else float(alpha)
    if not alpha > 0.0:
        raise ValueError("alpha must be positive")
    x_cut = _cutoff(s, accuracy)

    # separations r_i - r_j, in-plane part wrapped into the cell around 0
    d = pos[:, None, :] - pos[None, :, :]
    d = d - np.round(d @ b1)[..., None] * a1 - np.round(d @ b2)[..., None] * a2
    z = d @ nn

    # ---- real space: every image with in-plane distance <= x_cut / alpha ----
    r_cut = x_cut / alpha
    n1 = math.ceil(r_cut * np.linalg.norm(b1) + 0.5)
    n2 = math.ceil(r_cut * np.linalg.norm(b2) + 0.5)
    m1, m2 = np.meshgrid(
        np.arange(-n1, n1 + 1.0), np.arange(-n2, n2 + 1.0), indexing="ij"
    )
    m1, m2 = m1.ravel(), m2.ravel()
    images = m1[:, None] * a1 + m2[:, None] * a2
    origin = (m1 == 0.0) & (m2 == 0.0)
    skip = np.eye(n_atoms, dtype=bool)[:, :, None] & origin
    phi_pair, grad_pair = _short_range(d[:, :, None, :] + images, p, s, alpha, skip)

    # ---- reciprocal space ----
    pref = math.pi / (area * gamma(s))
    y = (alpha * z) ** 2
    sc0 = pref * alpha ** (2.0 * s - 2.0)  # times J(s - 1, ...): F
    sc1 = -2.0 * pref * alpha ** (2.0 * s) * z  # times J(s, ...): dF/dz
    # k = 0
    j0, j1 = bessel_integral(s - 1.0, 0.0, y)
    phi_pair = phi_pair + sc0 * j0
    grad_pair = grad_pair + (sc1 * j1)[..., None] * nn
    # k != 0: half of the lattice, doubled (F is even in k)
    k_cut = 2.0 * alpha * x_cut
    h1max = math.ceil(k_cut * np.linalg.norm(a1) / (2.0 * math.pi))
    h2max = math.ceil(k_cut * np.linalg.norm(a2) / (2.0 * math.pi))
    for h1 in range(0, h1max + 1):
        for h2 in range(-h2max, h2max + 1):
            if h1 == 0 and h2 <= 0:
                continue
            k = 2.0 * math.pi * (h1 * b1 + h2 * b2)
            kk = float(k @ k)
            if kk > k_cut * k_cut:
                continue
            j0, j1 = bessel_integral(s - 1.0, kk / (4.0 * alpha * alpha), y)
            kd = d @ k
            cos, sin = np.cos(kd), np.sin(kd)
            phi_pair = phi_pair + 2.0 * sc0 * cos * j0
            grad_pair = (
                grad_pair
                - (2.0 * sc0 * sin * j0)[..., None] * k
                + (2.0 * sc1 * cos * j1)[..., None] * nn
            )
    return _assemble(q, phi_pair, grad_pair, alpha, p, s)


def powerlaw_wire(
    positions, charges, axis_vector, exponent, accuracy=1e-13, alpha=None
):
    """Wire (1-D periodic, open across the axis) lattice sum of 1/r^p, p > 1.

    Parameters
    ----------
    positions : (N, 3) array of Cartesian positions
    charges : (N,) array of charges (any net charge)
    axis_vector : the lattice vector a (3-D, any direction)
    exponent : p > 1 (the sum converges absolutely); ValueError otherwise
    accuracy : bound on the neglected tails, relative (loose; default 1e-13)
    alpha : splitting parameter (inverse length); default sqrt(pi) / L

    Returns
    -------
    (energy, potentials, forces): phi_i = sum_j sum'_m q_j / |r_i - r_j + m a|^p
    (N,), energy = 1/2 sum_i q_i phi_i, and the forces (N, 3) = -dE/dr_i.
    """
    p = float(exponent)
    if not p > 1.0:
        raise ValueError(f"the wire sum of 1/r^p needs p > 1, got p = {p}")
    pos, q = _inputs(positions, charges)
    n_atoms = pos.shape[0]
    a = np.asarray(axis_vector, dtype=np.float64).reshape(3)
    length = float(np.linalg.norm(a))
    if not length > 0.0:
        raise ValueError("the axis vector must be nonzero")
    e = a / length
    s = 0.5 * p
    alpha = math.sqrt(math.pi) / length if alpha is None else float(alpha)
    if not alpha > 0.0:
        raise ValueError("alpha must be positive")
    x_cut = _cutoff(s, accuracy)

    # separations r_i - r_j, wrapped along the axis into [-L/2, L/2]
    d = pos[:, None, :] - pos[None, :, :]
    d = d - np.round((d @ e) / length)[..., None] * a
    z = d @ e
    rho_v = d - z[..., None] * e
    rho2 = np.einsum("ijc,ijc->ij", rho_v, rho_v)

    # ---- real space: every image with axial distance <= x_cut / alpha ----
    n_img = math.ceil(x_cut / (alpha * length) + 0.5)
    m = np.arange(-n_img, n_img + 1.0)
    skip = np.eye(n_atoms, dtype=bool)[:, :, None] & (m == 0.0)
    images = m[:, None] * a
    phi_pair, grad_pair = _short_range(d[:, :, None, :] + images, p, s, alpha, skip)

    # ---- reciprocal space ----
    pref = math.sqrt(math.pi) / (length * gamma(s))
    y = alpha * alpha * rho2
    sc0 = pref * alpha ** (2.0 * s - 1.0)  # times J(s - 1/2, ...): F
    sc1 = -2.0 * pref * alpha ** (2.0 * s + 1.0)  # times J(s + 1/2) rho_vec: grad F
    # k = 0
    j0, j1 = bessel_integral(s - 0.5, 0.0, y)
    phi_pair = phi_pair + sc0 * j0
    grad_pair = grad_pair + (sc1 * j1)[..., None] * rho_v
    # k = 2 pi m / L != 0: m > 0, doubled
    k_cut = 2.0 * alpha * x_cut
    for mk in range(1, math.ceil(k_cut * length / (2.0 * math.pi)) + 1):
        k = 2.0 * math.pi * mk / length
        j0, j1 = bessel_integral(s - 0.5, k * k / (4.0 * alpha * alpha), y)
        cos, sin = np.cos(k * z), np.sin(k * z)
        phi_pair = phi_pair + 2.0 * sc0 * cos * j0
        grad_pair = (
            grad_pair
            - (2.0 * sc0 * k * sin * j0)[..., None] * e
            + (2.0 * sc1 * cos * j1)[..., None] * rho_v
        )
    return _assemble(q, phi_pair, grad_pair, alpha, p, s)
