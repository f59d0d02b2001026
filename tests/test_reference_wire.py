"""Checks of the NumPy wire (1-D Ewald) reference in reference_wire.py.

These test the yardstick itself, against properties and limits that do not share
its formulas: the F_k quadrature against scipy.integrate.quad and Bessel-function
identities, alpha-independence, finite differences, rotations and the sign of the
axis, translations and permutations, a brute-force image sum, and closed forms
for charged cells: the field of a uniform line charge, the self-energy
q^2 (gamma - ln 2) / L of a lone charge, the digamma form of the sum for ions on
one axial line, and the K0 (Lekner-type) series off the axis.
"""

import math

import numpy as np
import pytest
from open_systems import assert_same, close
from reference_wire import ein, incomplete_bessel, wire_ewald
from scipy.integrate import quad
from scipy.spatial.transform import Rotation
from scipy.special import digamma, exp1, expn, k0, k1, polygamma

AXIS = np.array([1.0, 2.0, 6.0])  # L ~ 6.4


def _system(n_atoms=16, charged=False, seed=0, width=8.0, rotate=True):
    """Random ions in a cell of the wire, spread transversally over `width`."""
    rng = np.random.default_rng(seed)
    a = AXIS
    if rotate:
        a = a @ Rotation.random(random_state=seed + 100).as_matrix().T
    length = np.linalg.norm(a)
    a_hat = a / length
    pos = rng.uniform(-width / 2, width / 2, (n_atoms, 3))
    pos = pos - np.outer(pos @ a_hat, a_hat)  # transverse part
    pos = pos + np.outer(rng.uniform(0.0, length, n_atoms), a_hat)
    q = rng.normal(size=n_atoms)
    if charged:
        q[0] += 1.5  # a clear net charge
    else:
        q -= q.mean()
    return pos, q, a


# ---------------------------------------------------------------- the integrals


def _quad_i0_i1(x, y):
    """I0, I1 by scipy.integrate.quad, in t = e^-s on [1, inf)."""
    opts = {"epsabs": 0.0, "epsrel": 2e-14, "limit": 200}
    i0 = quad(lambda t: math.exp(-x * t - y / t) / t, 1.0, np.inf, **opts)[0]
    i1 = quad(lambda t: math.exp(-x * t - y / t) / t**2, 1.0, np.inf, **opts)[0]
    return i0, i1


@pytest.mark.parametrize("x", [0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0])
def test_incomplete_bessel_quad(x):
    ys = np.array([0.0, 1e-8, 1e-3, 0.1, 0.7, 2.0, 5.0, 20.0, 60.0])
    i0, i1 = incomplete_bessel(x, ys)
    for y, a0, a1 in zip(ys, i0, i1):
        b0, b1 = _quad_i0_i1(x, y)
        # relative, or absolute for values far below the O(1) scale of the sums
        assert abs(a0 - b0) <= 3e-14 * b0 + 1e-17, (x, y, a0, b0)
        assert abs(a1 - b1) <= 3e-14 * b1 + 1e-17, (x, y, a1, b1)
    # rho = 0: E1(x) and E2(x) = int_1^inf dt e^{-xt} / t^2
    assert abs(i0[0] - exp1(x)) <= 2e-15 * exp1(x)
    assert abs(i1[0] - expn(2, x)) <= 2e-15 * expn(2, x)


def test_incomplete_bessel_identities():
    """I0(x, y) + I0(y, x) = 2 K0(2 sqrt(xy)) (int_0^inf dt/t e^{-xt-y/t}); and the
    alpha -> infinity limits of the wire: L F_k -> 2 K0(k rho), int_0^inf du
    exp(-u rho^2 - k^2/(4u)) = (k/rho) K1(k rho); and I1 = -dI0/dy."""
    for x in (0.05, 0.3, 1.0, 2.5, 7.0):
        for y in (0.02, 0.4, 1.0, 3.0, 9.0):
            exact = 2.0 * k0(2.0 * math.sqrt(x * y))
            s = incomplete_bessel(x, [y])[0][0] + incomplete_bessel(y, [x])[0][0]
            assert abs(s - exact) <= 3e-15 * exact, (x, y, s, exact)
            h = 1e-4 * y
            ip, _ = incomplete_bessel(x, [y + h])
            im, _ = incomplete_bessel(x, [y - h])
            i1 = incomplete_bessel(x, [y])[1][0]
            assert abs(-(ip[0] - im[0]) / (2 * h) - i1) <= 1e-7 * i1
    alpha = 6.0  # alpha^2 rho^2 >= 144: the other half is < e^-140
    for k in (0.3, 1.0, 2.0):
        for rho in (2.0, 3.0, 5.0):
            i0, i1 = incomplete_bessel(k * k / (4 * alpha**2), [(alpha * rho) ** 2])
            assert abs(i0[0] - 2 * k0(k * rho)) <= 3e-15 * 2 * k0(k * rho)
            g = alpha**2 * i1[0]
            assert abs(g - k / rho * k1(k * rho)) <= 3e-15 * k / rho * k1(k * rho)


def test_ein():
    for x in (1e-12, 1e-3, 0.5, 1.9, 2.1, 10.0, 100.0):
        exact = quad(lambda t: -math.expm1(-t) / t, 0.0, x, epsabs=0.0, epsrel=2e-14)
        assert abs(ein(x) - exact[0]) <= 1e-14 * exact[0]
    # continuity where the series hands over to E1 + ln x + gamma
    assert abs(ein(2.0 - 1e-13) - ein(2.0)) < 1e-13


# ---------------------------------------------------------------- the sum


@pytest.mark.parametrize("charged", [False, True])
def test_alpha_independence(charged):
    pos, q, a = _system(20, charged=charged, seed=1)
    if charged:
        assert abs(q.sum()) > 0.5
    else:
        assert abs(q.sum()) < 1e-12
    ref = wire_ewald(pos, q, a, alpha=0.4)
    for alpha in (0.05, 0.15, 0.25, 0.7, 1.2, 3.0, None):
        assert_same(wire_ewald(pos, q, a, alpha=alpha), ref, 1e-13, q)


def test_cutoffs_converged():
    """The default accuracy agrees with a much tighter one (60 ions)."""
    pos, q, a = _system(60, charged=True, seed=2, width=12.0)
    ref = wire_ewald(pos, q, a, alpha=0.45, accuracy=1e-20)
    assert_same(wire_ewald(pos, q, a), ref, 1e-13, q)


@pytest.mark.parametrize("charged", [False, True])
def test_forces_finite_differences(charged):
    pos, q, a = _system(8, charged=charged, seed=3)
    _, _, forces = wire_ewald(pos, q, a)
    h = 1e-5
    fd = np.zeros_like(pos)
    for i in range(len(q)):
        for c in range(3):
            p, m = pos.copy(), pos.copy()
            p[i, c] += h
            m[i, c] -= h
            fd[i, c] = -(wire_ewald(p, q, a)[0] - wire_ewald(m, q, a)[0]) / (2 * h)
    assert close(fd, forces, 1e-8), np.abs(fd - forces).max()
    # net force: zero (Newton's third law holds pair by pair)
    assert np.abs(forces.sum(axis=0)).max() < 1e-12 * np.abs(forces).max()


@pytest.mark.parametrize("charged", [False, True])
def test_rotation_and_axis_sign(charged):
    pos, q, a = _system(14, charged=charged, seed=4)
    ref = wire_ewald(pos, q, a)
    rot = Rotation.random(random_state=7).as_matrix()
    e, phi, f = wire_ewald(pos @ rot.T, q, a @ rot.T)
    assert_same((e, phi, f @ rot), ref, 1e-12, q)
    assert_same(wire_ewald(pos, q, -a), ref, 1e-12, q)
    assert_same(wire_ewald(pos, q, -a, alpha=0.3), ref, 1e-12, q)
    # an improper rotation (a reflection) too
    refl = np.eye(3) - 2.0 * np.outer([0.6, 0.0, 0.8], [0.6, 0.0, 0.8])
    e, phi, f = wire_ewald(pos @ refl.T, q, a @ refl.T)
    assert_same((e, phi, f @ refl), ref, 1e-12, q)


@pytest.mark.parametrize("charged", [False, True])
def test_translation_and_permutation(charged):
    pos, q, a = _system(14, charged=charged, seed=5)
    ref = wire_ewald(pos, q, a)
    rng = np.random.default_rng(6)
    # a rigid translation by any vector (transverse components included)
    assert_same(wire_ewald(pos + rng.normal(size=3) * 5, q, a), ref, 1e-12, q)
    # each atom by its own lattice vector
    shifts = rng.integers(-3, 4, size=(len(q), 1)) * a
    assert_same(wire_ewald(pos + shifts, q, a), ref, 1e-12, q)
    # permutation
    perm = rng.permutation(len(q))
    e, phi, f = wire_ewald(pos[perm], q[perm], a)
    inv = np.argsort(perm)
    assert_same((e, phi[inv], f[inv]), ref, 1e-12, q)


# ---------------------------------------------------------------- limits


def _multipole_free_cell():
    """A neutral cell with no dipole and no quadrupole: a random (charged) group S,
    differenced three times, S -> S - S(shifted by d), for three shifts d. Two
    such cells interact as 1/r^7, so the image sum over |m| <= M misses ~ M^-6 in
    the energy; per-ion potentials and fields miss ~ M^-4 (the odd, octupole part
    of the potential cancels between m and -m). The cell is longer than L, so the
    images overlap and matter."""
    rng = np.random.default_rng(5)
    a = np.array([0.5, -0.3, 2.0])
    a_hat = a / np.linalg.norm(a)
    pos = rng.uniform(-1.5, 1.5, (3, 3)) + rng.uniform(-2.0, 2.0, (3, 1)) * a_hat
    q = np.array([1.0, -0.7, 0.4])
    for d in ([0.61, 0.42, 0.5], [-0.4, 0.57, 0.75], 0.9 * a_hat + [0.05, 0.1, -0.2]):
        pos = np.concatenate([pos, pos + np.asarray(d)])
        q = np.concatenate([q, -q])
    return pos, q, a


def test_brute_force_image_sum():
    """Against the plain cell-by-cell sum of q_i q_j / |r_ij + m a| over
    |m| <= M. Reached (M = 4000, the image part of E ~ 6 % of E): energy to
    ~4e-16 relative (~1e-14 of the image part); potentials and forces to
    ~7e-16 and ~5e-16 of their largest entries (the raw tails fall as M^-4:
    ~2e-11 and ~5e-12 at M = 250, ~5e-15 and ~2e-15 at M = 2000)."""
    pos, q, a = _multipole_free_cell()
    assert abs(q.sum()) < 1e-14
    assert np.abs(q @ pos).max() < 1e-14
    assert np.abs(np.einsum("i,ia,ib->ab", q, pos, pos)).max() < 1e-13
    e, phi, f = wire_ewald(pos, q, a)

    m_max = 4000
    ms = np.concatenate([[0], np.repeat(np.arange(1, m_max + 1), 2)])
    ms[2::2] *= -1  # 0, 1, -1, 2, -2, ...
    d = pos[:, None, :] - pos[None, :, :]
    rv = d[None] + ms[:, None, None, None] * a
    r = np.linalg.norm(rv, axis=-1)
    inv = np.divide(1.0, r, out=np.zeros_like(r), where=r > 0)
    pot = inv @ q  # (images, N)
    fld = np.einsum("mijc,mij,j->mic", rv, inv**3, q)

    def brute(m_cut):
        sel = np.abs(ms) <= m_cut
        outside_in = np.argsort(-np.abs(ms[sel]), kind="stable")  # small first
        phi_bf = np.array([math.fsum(col) for col in pot[sel][outside_in].T])
        fld_sel = fld[sel][outside_in].reshape(len(outside_in), -1)
        fld_bf = np.array([math.fsum(col) for col in fld_sel.T]).reshape(-1, 3)
        return phi_bf, q[:, None] * fld_bf

    phi_bf, f_bf = brute(m_max)
    e_bf = 0.5 * math.fsum(q * phi_bf)
    e_images = e - 0.5 * math.fsum(pot[0] * q)
    assert abs(e_images) > 1e-2 * abs(e)  # the images matter
    assert abs(e - e_bf) < 3e-15 * abs(e), (e, e_bf)
    assert abs(e - e_bf) < 1e-13 * abs(e_images)
    assert close(phi_bf, phi, 3e-15), np.abs(phi - phi_bf).max()
    assert close(f_bf, f, 3e-15), np.abs(f - f_bf).max()
    # the slow M^-4 convergence of the raw sums, seen at M = 250
    phi_250, f_250 = brute(250)
    assert not close(phi_250, phi, 1e-12)
    assert close(phi_250, phi, 1e-10)
    assert close(f_250, f, 1e-10)


def test_charged_line_limit():
    """Two like charges far apart transversally (rho >> L) interact through the
    line-charge potential -(2 q1 q2 / L) ln(rho / L), corrections ~ 2 K0(2 pi
    rho / L) / L ~ e^{-2 pi rho / L}; the transverse force is 2 q1 q2 / (L rho)."""
    a = AXIS @ Rotation.random(random_state=11).as_matrix().T
    length = np.linalg.norm(a)
    a_hat = a / length
    perp = np.cross(a_hat, [0.3, -0.5, 0.8])
    perp /= np.linalg.norm(perp)
    q = np.array([0.7, 1.3])
    base = np.array([0.4, -1.1, 2.0])
    energies, potentials = [], []
    for rho in (6.0 * length, 9.5 * length):
        pos = np.array([base, base + rho * perp + 0.37 * length * a_hat])
        e, phi, f = wire_ewald(pos, q, a)
        energies.append(e)
        potentials.append(phi)
        line_force = 2.0 * q[0] * q[1] / (length * rho)
        assert np.allclose(f[1], line_force * perp, rtol=0, atol=1e-14 * line_force)
        assert np.allclose(f[0], -line_force * perp, rtol=0, atol=1e-14 * line_force)
    expected = -2.0 * q[0] * q[1] / length * math.log(9.5 / 6.0)
    assert abs((energies[1] - energies[0]) - expected) < 1e-14 * abs(expected)
    # phi_1 - phi_1' = q_2 (F_0(rho) - F_0(rho')), for ion 1 and ion 2
    dphi = potentials[1] - potentials[0]
    assert np.allclose(dphi, q[::-1] * expected / (q[0] * q[1]), rtol=1e-14, atol=0)
    # and at the line-charge zero, rho = L up to e^{-2 pi} corrections: a
    # charge beside a far one feels its own images plus -(2 q2 / L) ln(rho / L)
    e_single = wire_ewald(base[None], q[:1], a)[1][0]
    assert abs(potentials[0][0] - e_single - q[1] * (-2 / length) * math.log(6.0)) < (
        1e-14 * abs(potentials[0][0])
    )


def test_single_charge_self_energy():
    """One charge alone: E = q^2 (gamma - ln 2) / L, the regularised sum
    (1/2) q^2 lim_M [sum_{0 < |m| <= M} 1/(|m| L) - (2/L) ln(2M)]."""
    a = np.array([0.3, -1.2, 4.1])
    length = np.linalg.norm(a)
    exact = 1.7**2 * (np.euler_gamma - math.log(2.0)) / length
    for alpha in (0.1, 0.4, 1.5, None):
        e, phi, f = wire_ewald([[0.1, 0.2, 0.3]], [1.7], a, alpha=alpha)
        assert abs(e - exact) < 3e-15 * abs(exact), (alpha, e, exact)
        assert abs(phi[0] - 2 * exact / 1.7) < 3e-15 * abs(phi[0])
        assert np.abs(f).max() < 1e-15


def _psi_axis(z, length):
    """The pair term for rho = 0: lim_M [sum_{|m|<=M} 1/|z + m L| - (2/L) ln 2M]
    = -(1/L) [digamma(t) + digamma(1 - t) + 2 ln 2], t = |z/L| mod 1 in [0, 1/2],
    and its z-derivative (trigamma)."""
    w = (z - length * np.round(z / length)) / length
    t = abs(w)
    psi = -(digamma(t) + digamma(1.0 - t) + 2.0 * math.log(2.0)) / length
    dpsi = -math.copysign(1.0, w) * (polygamma(1, t) - polygamma(1, 1.0 - t))
    return psi, dpsi / length**2


def test_ions_on_one_axial_line():
    """Charged ions on one line parallel to the axis: E = sum_i q_i^2 (gamma -
    ln 2)/L + sum_{i<j} q_i q_j psi(z_ij) with the digamma form of psi, and the
    axial forces from its trigamma derivative."""
    a = np.array([0.3, -1.2, 4.1]) @ Rotation.random(random_state=3).as_matrix().T
    length = np.linalg.norm(a)
    a_hat = a / length
    rng = np.random.default_rng(12)
    n = 7
    z = rng.uniform(-3.0, 9.0, n)
    z[1] = z[0] + 2 * length + 0.013  # nearly on top of an image of ion 0
    q = rng.normal(size=n)
    q[0] += 1.0
    pos = np.array([0.5, 0.1, -0.4]) + z[:, None] * a_hat
    e, phi, f = wire_ewald(pos, q, a)
    pair = np.zeros((n, n))
    dpair = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                # z_ij from the rounded positions, wrapped as the sum wraps it
                # (the near-image pair is ill-conditioned in z_ij, ~ |z| / 0.013)
                d = pos[i] - pos[j]
                z_ij = (d - round(d @ a_hat / length) * a) @ a_hat
                pair[i, j], dpair[i, j] = _psi_axis(z_ij, length)
    self_phi = 2.0 * (np.euler_gamma - math.log(2.0)) / length * q
    phi_exact = pair @ q + self_phi
    assert close(phi, phi_exact, 2e-15), np.abs(phi - phi_exact).max()
    e_exact = 0.5 * q @ phi_exact
    assert abs(e - e_exact) < 2e-15 * 0.5 * np.abs(q * phi_exact).sum()
    f_exact = -q * (dpair @ q)
    assert close(f @ a_hat, f_exact, 3e-15), np.abs(f @ a_hat - f_exact).max()
    # transverse: only what the ~1e-16 transverse rounding of the positions
    # gives with the 0.013 pair (~ q^2 1e-16 / 0.013^3)
    f_perp = f - np.outer(f @ a_hat, a_hat)
    assert np.abs(f_perp).max() < 1e-12 * np.abs(f_exact).max()


def test_bessel_series_pair():
    """Off the axis the pair term is the alpha -> infinity form of the sum
    (Lekner / Tyagi): psi(rho, z) = -(2/L) ln(rho/L) + (4/L) sum_{k>0} K0(k rho)
    cos(k z), and -grad psi from K1 and sin; checked for two charged ions."""
    a = np.array([0.3, -1.2, 4.1])
    length = np.linalg.norm(a)
    a_hat = a / length
    perp = np.cross(a_hat, [1.0, 0.0, 0.0])
    perp /= np.linalg.norm(perp)
    q = np.array([0.8, -1.9])
    base = np.array([0.5, 0.1, -0.4])
    e_self = (q**2).sum() * (np.euler_gamma - math.log(2.0)) / length
    k = 2 * math.pi * np.arange(1, 401) / length
    for rho in (0.05 * length, 0.3 * length, 1.0 * length, 1.7 * length):
        for z in (0.0, 0.3 * length, 2.7, -7.9):
            pos = np.array([base, base + rho * perp + z * a_hat])
            e, _, f = wire_ewald(pos, q, a)
            kr = k * rho
            psi = -2 / length * math.log(rho / length) + 4 / length * np.sum(
                k0(kr) * np.cos(k * z)
            )
            dpsi_drho = -2 / (length * rho) - 4 / length * np.sum(
                k * k1(kr) * np.cos(k * z)
            )
            dpsi_dz = -4 / length * np.sum(k * k0(kr) * np.sin(k * z))
            assert abs(e - e_self - q[0] * q[1] * psi) < 3e-15 * abs(e), (rho, z)
            # force on ion 1 (r_1 - r_0 = rho perp + z a_hat)
            f1 = -q[0] * q[1] * (dpsi_drho * perp + dpsi_dz * a_hat)
            assert np.abs(f[1] - f1).max() < 2e-14 * np.abs(f1).max(), (rho, z)
            assert np.abs(f[0] + f1).max() < 2e-14 * np.abs(f1).max()


@pytest.mark.parametrize("n_atoms", [40])
def test_speed(n_atoms):
    """Keeps the reference usable inside other tests: 40 ions well under a second."""
    import time

    pos, q, a = _system(n_atoms, charged=True, seed=9)
    t0 = time.perf_counter()
    wire_ewald(pos, q, a)
    assert time.perf_counter() - t0 < 5.0
