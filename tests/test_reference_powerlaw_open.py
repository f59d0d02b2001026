"""Checks of the NumPy 1/r^p slab and wire references in reference_powerlaw_open.py.

These test the yardstick itself, by means that do not share its formulas:

* the t-integral J(nu, x, y) against scipy.integrate.quad, a Bessel-K identity,
  the upper incomplete gamma function and the erfc closed form at nu = -1/2;
* a direct image sum with its continuum tail (test_reference_powerlaw_images.py);
* alpha-independence, the default accuracy against a much tighter one,
  finite-difference forces, Newton's third law, rotations, another basis of the
  same lattice, the sign of the axis, lattice translations and permutations;
* closed forms: a lone charge in a wire, 2 zeta(p) / L^p; the p = 2 wire pair
  sum (pi / (L rho)) sinh(2 pi rho / L) / (cosh(2 pi rho / L) - cos(2 pi z / L));
  a lone charge in a square or a hexagonal slab lattice, 4 zeta(s) beta(s) / a^p
  and 6 zeta(s) L_-3(s) / a^p (s = p / 2, Dirichlet beta and L-functions from
  Hurwitz zeta functions).
"""

import math

import numpy as np
import pytest
from reference_powerlaw_open import bessel_integral, powerlaw_slab, powerlaw_wire
from scipy.integrate import quad
from scipy.spatial.transform import Rotation
from scipy.special import erfc, exp1, kv, zeta

SLAB_P = [3.0, 3.5, 4.0, 6.0]
WIRE_P = [1.5, 2.0, 3.0, 4.0, 6.0]
A1 = np.array([3.1, 0.4, 0.0])
A2 = np.array([1.2, 2.9, 0.0])  # a triclinic in-plane cell, angle ~ 60 degrees
AXIS = np.array([1.0, 1.5, 3.0])  # L ~ 3.5


def _rel(x, y):
    """Largest deviation relative to the largest entry of y."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-300))


def _assert_same(res, ref, rtol):
    (e, phi, f), (e0, phi0, f0) = res, ref
    assert _rel(e, e0) <= rtol, (e, e0)
    assert _rel(phi, phi0) <= rtol, _rel(phi, phi0)
    assert _rel(f, f0) <= rtol, _rel(f, f0)


def _tilt():
    """A fixed rotation that takes the slab plane and the axis out of xy / z."""
    return Rotation.from_euler("xyz", [0.7, -0.4, 1.1]).as_matrix()


def _slab_system(n_atoms=6, seed=0, height=4.0):
    """Ions in a tilted triclinic slab cell (a net charge), spread over `height`
    along the normal."""
    rng = np.random.default_rng(seed)
    rot = _tilt()
    frac = rng.uniform(0.0, 1.0, (n_atoms, 2))
    pos = frac[:, :1] * A1 + frac[:, 1:] * A2
    pos[:, 2] = rng.uniform(-height / 2, height / 2, n_atoms)
    q = rng.normal(size=n_atoms)
    q[0] += 1.0
    return pos @ rot.T, q, A1 @ rot.T, A2 @ rot.T


def _wire_system(n_atoms=6, seed=0, width=5.0):
    """Ions in a cell of a wire along a tilted axis (a net charge), spread over
    `width` transversally; one pair sits on a common axial line (rho = 0)."""
    rng = np.random.default_rng(seed)
    a = AXIS
    length = np.linalg.norm(a)
    e = a / length
    pos = rng.uniform(-width / 2, width / 2, (n_atoms, 3))
    pos = pos - np.outer(pos @ e, e)
    pos = pos + np.outer(rng.uniform(0.0, length, n_atoms), e)
    pos[1] = pos[0] + 0.37 * a  # same transverse position as atom 0
    q = rng.normal(size=n_atoms)
    q[0] += 1.0
    return pos, q, a


# ---------------------------------------------------------------- the integral


def _quad_j(nu, x, y):
    """J(nu, x, y) = int_0^1 u^(nu-1) exp(-y u - x/u) du by scipy.integrate.quad."""
    opts = {"epsabs": 0.0, "epsrel": 2e-14, "limit": 400}
    if x == 0.0:  # algebraic end-point singularity u^(nu-1): a weighted rule
        return quad(
            lambda u: math.exp(-y * u),
            0.0,
            1.0,
            weight="alg",
            wvar=(nu - 1.0, 0.0),
            **opts,
        )[0]

    def f(u):
        return 0.0 if u == 0.0 else u ** (nu - 1.0) * math.exp(-y * u - x / u)

    peak = math.sqrt(x / y) if y > 0.0 else 1.0  # where y u = x / u
    if peak < 0.9:
        return quad(f, 0.0, peak, **opts)[0] + quad(f, peak, 1.0, **opts)[0]
    return quad(f, 0.0, 1.0, **opts)[0]


@pytest.mark.parametrize("nu", [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5])
def test_bessel_integral_quad(nu):
    ys = np.array([0.0, 1e-9, 1e-3, 0.3, 0.99, 1.01, 4.0, 25.0, 150.0])
    worst = 0.0
    for x in (0.0, 0.05, 0.5, 2.0, 9.0, 40.0):
        j0, j1 = bessel_integral(nu, x, ys)
        for y, a0, a1 in zip(ys, j0, j1):
            b0, b1 = _quad_j(nu, x, y), _quad_j(nu + 1.0, x, y)
            # relative, or absolute against the O(1) scale J(nu, 0, 0) = 1/nu
            worst = max(worst, abs(a0 - b0) / (b0 + 1e-3), abs(a1 - b1) / (b1 + 1e-3))
    assert worst < 2e-14, worst


def _k_nu(nu, z):
    """K_nu(z): elementary for half-integer orders, scipy's kv for integer ones
    (scipy's kv of other fractional orders is good to only ~1e-13)."""
    base = math.sqrt(math.pi / (2 * z)) * math.exp(-z)
    half = {0.5: 1.0, 1.5: 1 + 1 / z, 2.5: 1 + 3 / z + 3 / z**2}
    return base * half[nu] if nu in half else float(kv(nu, z))


def test_bessel_integral_identities():
    """J(nu, x, y) + J(-nu, y, x) = int_0^inf = 2 (x/y)^(nu/2) K_nu(2 sqrt(xy));
    J(nu, x, 0) = x^nu Gamma(-nu, x) (nu < 0); the erfc form at nu = -1/2."""
    for nu in (0.5, 1.0, 1.5, 2.0, 2.5):
        for x in (0.1, 0.6, 2.0, 6.0):
            for y in (0.05, 0.5, 1.5, 5.0):
                exact = 2.0 * (x / y) ** (nu / 2) * _k_nu(nu, 2.0 * math.sqrt(x * y))
                s = (
                    bessel_integral(nu, x, [y])[0][0]
                    + bessel_integral(-nu, y, [x])[0][0]
                )
                assert abs(s - exact) <= 3e-15 * exact, (nu, x, y, s, exact)
    # J(nu, x, 0) = x^nu Gamma(-nu, x), elementary for these orders (scipy's
    # gammaincc is good to only ~3e-14 at some arguments)
    upper = {
        0.0: exp1,
        -0.5: lambda x: math.sqrt(math.pi / x) * erfc(math.sqrt(x)),
        -1.0: lambda x: math.exp(-x) / x,
        -1.5: lambda x: (
            (math.sqrt(math.pi) / 2 * erfc(math.sqrt(x)) + math.sqrt(x) * math.exp(-x))
            / x**1.5
        ),
        -2.0: lambda x: math.exp(-x) * (1 / x + 1 / x**2),
    }
    for nu, closed in upper.items():
        for x in (0.1, 1.0, 10.0):
            exact = closed(x)
            assert abs(bessel_integral(nu, x, [0.0])[0][0] - exact) <= 3e-15 * exact
    # int_0^{alpha^2} t^(-3/2) exp(-t z^2 - k^2/(4t)) dt (the 1/r slab integral)
    # = (sqrt(pi)/k) [e^{kz} erfc(k/(2 alpha) + alpha z) + e^{-kz} erfc(k/(2 alpha) - alpha z)]
    alpha = 0.8
    for k in (0.5, 1.3, 3.0):
        for z in (0.0, 0.4, 1.5, 3.0):
            a = k / (2 * alpha)
            exact = (
                math.sqrt(math.pi)
                / k
                * (
                    math.exp(k * z) * erfc(a + alpha * z)
                    + math.exp(-k * z) * erfc(a - alpha * z)
                )
            )
            val = alpha**-1 * bessel_integral(-0.5, a * a, [(alpha * z) ** 2])[0][0]
            assert abs(val - exact) <= 3e-15 * exact, (k, z, val, exact)


def test_bad_inputs():
    pos, q = np.zeros((1, 3)), np.ones(1)
    for p in (2.0, 1.5, 0.0, -1.0):
        with pytest.raises(ValueError):
            powerlaw_slab(pos, q, A1, A2, p)
    for p in (1.0, 0.5, -2.0):
        with pytest.raises(ValueError):
            powerlaw_wire(pos, q, AXIS, p)
    with pytest.raises(ValueError):
        powerlaw_slab(pos, q, A1, 2 * A1, 3.0)
    with pytest.raises(ValueError):
        powerlaw_wire(pos, q, np.zeros(3), 3.0)
    with pytest.raises(ValueError):
        powerlaw_wire(np.zeros((2, 3)), q, AXIS, 3.0)


# ---------------------------------------------------------------- closed forms


def _beta(s):
    """Dirichlet beta: sum_n (-1)^n (2n+1)^-s = 4^-s (zeta(s, 1/4) - zeta(s, 3/4))."""
    return 4.0**-s * (zeta(s, 0.25) - zeta(s, 0.75))


def _l3(s):
    """L(s, chi_-3) = 3^-s (zeta(s, 1/3) - zeta(s, 2/3))."""
    return 3.0**-s * (zeta(s, 1.0 / 3.0) - zeta(s, 2.0 / 3.0))


@pytest.mark.parametrize("p", [*SLAB_P, 2.5])
def test_slab_lone_charge(p):
    """Sum' over the square lattice |n|^-p = 4 zeta(s) beta(s) / a^p and over the
    hexagonal one 6 zeta(s) L_-3(s) / a^p (theta series of the two lattices)."""
    s, a, q = p / 2, 2.3, -1.7
    rot = _tilt()
    cells = {
        "square": (np.array([a, 0, 0]), np.array([0, a, 0]), 4 * zeta(s) * _beta(s)),
        "hexagonal": (
            np.array([a, 0, 0]),
            np.array([-a / 2, a * math.sqrt(3) / 2, 0]),
            6 * zeta(s) * _l3(s),
        ),
    }
    for a1, a2, lattice_sum in cells.values():
        exact = lattice_sum / a**p
        e, phi, f = powerlaw_slab(
            [[0.3, -1.0, 0.8]] @ rot.T, [q], a1 @ rot.T, a2 @ rot.T, p
        )
        assert abs(phi[0] - q * exact) <= 2e-15 * abs(q * exact)
        assert abs(e - 0.5 * q * q * exact) <= 2e-15 * 0.5 * q * q * exact
        assert np.abs(f).max() <= 1e-14 * abs(q * q * exact)


@pytest.mark.parametrize("p", WIRE_P)
def test_wire_lone_charge(p):
    """Sum_{m != 0} |m L|^-p = 2 zeta(p) / L^p."""
    q = 1.3
    length = np.linalg.norm(AXIS)
    exact = 2.0 * zeta(p) / length**p
    e, phi, f = powerlaw_wire([[0.5, -2.0, 1.0]], [q], AXIS, p)
    assert abs(phi[0] - q * exact) <= 2e-15 * q * exact
    assert abs(e - 0.5 * q * q * exact) <= 2e-15 * 0.5 * q * q * exact
    assert np.abs(f).max() <= 1e-14 * q * q * exact


def test_wire_pair_p2():
    """p = 2: sum_m 1/(rho^2 + (z + m L)^2) = (pi / (L rho)) sinh(2 pi rho / L)
    / (cosh(2 pi rho / L) - cos(2 pi z / L)), for potentials and forces."""
    length = np.linalg.norm(AXIS)
    e = AXIS / length
    t = np.cross(e, [1.0, 0.0, 0.0])
    t /= np.linalg.norm(t)
    q = np.array([0.8, -1.9])
    self_sum = 2.0 * zeta(2.0) / length**2

    def pair(rho, z):
        c = 2 * math.pi / length
        return (
            math.pi
            / (length * rho)
            * math.sinh(c * rho)
            / (math.cosh(c * rho) - math.cos(c * z))
        )

    for rho, z in ((0.3, 0.1), (1.0, 1.7), (2.5, -0.4), (6.0, 3.0)):
        pos = np.array([[0.2, 0.1, -0.3], [0.2, 0.1, -0.3] + rho * t + z * e])
        en, phi, f = powerlaw_wire(pos, q, AXIS, 2.0)
        s = pair(rho, z)
        exact = np.array([q[0] * self_sum + q[1] * s, q[1] * self_sum + q[0] * s])
        assert _rel(phi, exact) <= 3e-15, (rho, z, phi, exact)
        assert abs(en - 0.5 * q @ exact) <= 3e-15 * 0.5 * np.abs(q * exact).sum()
        # force on atom 1: -q0 q1 grad_{r1} S, S differentiated by hand
        c = 2 * math.pi / length
        den = math.cosh(c * rho) - math.cos(c * z)
        ds_rho = (
            -s / rho
            + math.pi
            * c
            / (length * rho)
            * (1 - math.cosh(c * rho) * math.cos(c * z))
            / den**2
        )
        ds_z = (
            -math.pi
            * c
            / (length * rho)
            * math.sinh(c * rho)
            * math.sin(c * z)
            / den**2
        )
        f1 = -q[0] * q[1] * (ds_rho * t + ds_z * e)
        assert _rel(f[1], f1) <= 3e-15, (f[1], f1)
        assert _rel(f[0], -f1) <= 3e-15


# ---------------------------------------------------------------- the Ewald sums


@pytest.mark.parametrize("p", SLAB_P)
def test_slab_alpha_independence(p):
    pos, q, a1, a2 = _slab_system(10, seed=3, height=6.0)
    ref = powerlaw_slab(pos, q, a1, a2, p)
    for alpha in (0.3, 0.6, 1.2):
        _assert_same(powerlaw_slab(pos, q, a1, a2, p, alpha=alpha), ref, 1e-13)
    # the default cutoffs against much tighter ones
    _assert_same(powerlaw_slab(pos, q, a1, a2, p, accuracy=1e-17), ref, 1e-13)


@pytest.mark.parametrize("p", WIRE_P)
def test_wire_alpha_independence(p):
    pos, q, a = _wire_system(10, seed=4, width=7.0)
    ref = powerlaw_wire(pos, q, a, p)
    for alpha in (0.25, 0.6, 1.3):
        _assert_same(powerlaw_wire(pos, q, a, p, alpha=alpha), ref, 1e-13)
    _assert_same(powerlaw_wire(pos, q, a, p, accuracy=1e-17), ref, 1e-13)


def _finite_difference_forces(energy, pos, h=1e-3):
    """-dE/dr by the fourth-order central difference."""
    fd = np.zeros_like(pos)
    for i in range(pos.shape[0]):
        for c in range(3):
            e = []
            for step in (-2, -1, 1, 2):
                shifted = pos.copy()
                shifted[i, c] += step * h
                e.append(energy(shifted))
            fd[i, c] = -(e[0] - 8 * e[1] + 8 * e[2] - e[3]) / (12 * h)
    return fd


@pytest.mark.parametrize("p", [3.0, 3.5, 6.0])
def test_slab_forces(p):
    pos, q, a1, a2 = _slab_system(4, seed=5)
    _, _, forces = powerlaw_slab(pos, q, a1, a2, p)
    fd = _finite_difference_forces(lambda r: powerlaw_slab(r, q, a1, a2, p)[0], pos)
    assert _rel(fd, forces) <= 1e-9, _rel(fd, forces)
    assert np.abs(forces.sum(axis=0)).max() <= 1e-13 * np.abs(forces).max()


@pytest.mark.parametrize("p", [1.5, 2.0, 4.0])
def test_wire_forces(p):
    pos, q, a = _wire_system(4, seed=6)
    _, _, forces = powerlaw_wire(pos, q, a, p)
    fd = _finite_difference_forces(lambda r: powerlaw_wire(r, q, a, p)[0], pos)
    assert _rel(fd, forces) <= 1e-9, _rel(fd, forces)
    assert np.abs(forces.sum(axis=0)).max() <= 1e-13 * np.abs(forces).max()


@pytest.mark.parametrize("p", [3.5, 4.0])
def test_slab_invariances(p):
    """Rotation of everything, another basis of the same lattice (a1 + 2 a2, -a2:
    the normal flips), a lattice translation of one ion, a permutation."""
    pos, q, a1, a2 = _slab_system(8, seed=7)
    e0, phi0, f0 = ref = powerlaw_slab(pos, q, a1, a2, p)
    rot = Rotation.random(random_state=11).as_matrix()
    e, phi, f = powerlaw_slab(pos @ rot.T, q, a1 @ rot.T, a2 @ rot.T, p)
    _assert_same((e, phi, f @ rot), ref, 2e-14)
    _assert_same(powerlaw_slab(pos, q, a1 + 2 * a2, -a2, p), ref, 2e-14)
    moved = pos.copy()
    moved[3] += 2 * a1 - a2
    _assert_same(powerlaw_slab(moved, q, a1, a2, p), ref, 2e-14)
    perm = np.random.default_rng(0).permutation(len(q))
    e, phi, f = powerlaw_slab(pos[perm], q[perm], a1, a2, p)
    _assert_same((e, phi, f), (e0, phi0[perm], f0[perm]), 2e-14)


@pytest.mark.parametrize("p", [1.5, 3.0])
def test_wire_invariances(p):
    """Rotation of everything, the sign of the axis, a lattice translation of one
    ion, a permutation."""
    pos, q, a = _wire_system(8, seed=8)
    e0, phi0, f0 = ref = powerlaw_wire(pos, q, a, p)
    rot = Rotation.random(random_state=12).as_matrix()
    e, phi, f = powerlaw_wire(pos @ rot.T, q, a @ rot.T, p)
    _assert_same((e, phi, f @ rot), ref, 2e-14)
    _assert_same(powerlaw_wire(pos, q, -a, p), ref, 2e-14)
    moved = pos.copy()
    moved[2] -= 3 * a
    _assert_same(powerlaw_wire(moved, q, a, p), ref, 2e-14)
    perm = np.random.default_rng(1).permutation(len(q))
    e, phi, f = powerlaw_wire(pos[perm], q[perm], a, p)
    _assert_same((e, phi, f), (e0, phi0[perm], f0[perm]), 2e-14)
