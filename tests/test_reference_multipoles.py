"""Checks of the NumPy point-multipole reference in reference_multipoles.py.

These test the yardstick itself, against properties and limits that do not share
its formulas: alpha-independence and converged cutoffs, finite differences of the
energy (forces, fields, torques), the field of a probe, a pair in a large cell
against the textbook pair energies, dipoles and quadrupoles built from point
charges, conservation laws of a cluster, and the spherical direct lattice sum.
"""

import math

import numpy as np
import pytest
from reference_multipoles import (
    _derivatives,
    _ladder,
    multipole_direct,
    multipole_ewald,
    multipole_spherical_sum,
)
from scipy.spatial.transform import Rotation

CELL = np.array([[7.0, 0.4, -0.3], [1.2, 6.5, 0.2], [-0.8, 0.9, 7.5]])
KEYS = ("potential", "field", "field_gradient", "forces", "torques")
KINDS = ("charges", "dipoles", "quadrupoles", "all")


def _traceless(rng, n):
    a = rng.normal(size=(n, 3, 3))
    a = a + a.transpose(0, 2, 1)
    return a - np.trace(a, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3


def _system(kind="all", n_atoms=7, seed=0, cell=CELL):
    """Random multipoles in a (triclinic) cell; "all" has a net charge as well."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(size=(n_atoms, 3)) @ cell
    q = rng.normal(size=n_atoms)
    q = q - q.mean() + (0.7 if kind == "all" else 0.0)
    mu, theta = rng.normal(size=(n_atoms, 3)), _traceless(rng, n_atoms)
    return (
        pos,
        cell,
        q if kind in ("charges", "all") else None,
        mu if kind in ("dipoles", "all") else None,
        theta if kind in ("quadrupoles", "all") else None,
    )


def _close(x, y, rtol):
    """Equal to ``rtol`` relative to the largest entry of ``y`` (exact if y = 0)."""
    x, y = np.asarray(x), np.asarray(y)
    return np.abs(x - y).max() <= rtol * np.abs(y).max()


def _misfit(x, y):
    """max |x - y| relative to max |y|."""
    return np.abs(np.subtract(x, y)).max() / np.abs(y).max()


def _assert_same(res, ref, rtol):
    assert abs(res["energy"] - ref["energy"]) <= rtol * abs(ref["energy"])
    for key in KEYS:
        assert _close(res[key], ref[key], rtol), key


def _energy(pos, cell, q, mu, theta):
    return multipole_ewald(pos, cell, q, mu, theta)["energy"]


def _slope(energy, x, step):
    """Central difference (energy(x + step) - energy(x - step)) / 2."""
    return (energy(x + step) - energy(x - step)) / 2


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_independence(kind):
    system = _system(kind, seed=1)
    ref = multipole_ewald(*system)
    assert math.isclose(ref["atom_energies"].sum(), ref["energy"], rel_tol=1e-14)
    for alpha in (0.35, 0.5, 0.7):
        _assert_same(multipole_ewald(*system, alpha=alpha), ref, 1e-10)


def test_cutoffs_converged():
    """The default ``tail`` agrees with a far tighter one at another alpha."""
    system = _system("all", seed=2)
    ref = multipole_ewald(*system, alpha=0.45, tail=1e-20)
    _assert_same(multipole_ewald(*system), ref, 1e-13)


def test_forces_finite_differences():
    pos, cell, q, mu, theta = _system("all", n_atoms=5, seed=3)
    forces = multipole_ewald(pos, cell, q, mu, theta)["forces"]
    h, fd = 1e-5, np.zeros_like(pos)
    for i, c in np.ndindex(pos.shape):
        step = np.zeros_like(pos)
        step[i, c] = h
        fd[i, c] = -_slope(lambda p: _energy(p, cell, q, mu, theta), pos, step) / h
    assert _close(fd, forces, 1e-8)


def test_torques_finite_rotations():
    """tau_i = -dE/dtheta for mu_i -> R mu_i, Theta_i -> R Theta_i R^T."""
    pos, cell, q, mu, theta = _system("all", n_atoms=5, seed=4)
    res = multipole_ewald(pos, cell, q, mu, theta)

    def turned(i):  # the energy with atom i turned by a rotation vector
        def energy(angle):
            rot = Rotation.from_rotvec(angle).as_matrix()
            m, t = mu.copy(), theta.copy()
            m[i], t[i] = rot @ mu[i], rot @ theta[i] @ rot.T
            return _energy(pos, cell, q, m, t)

        return energy

    h, fd = 1e-4, np.zeros_like(pos)
    for i, c in np.ndindex(pos.shape):
        fd[i, c] = -_slope(turned(i), np.zeros(3), h * np.eye(3)[c]) / h
    assert _close(fd, res["torques"], 1e-7)
    # the dipoles alone: tau = mu x E exactly
    dip = multipole_ewald(pos, cell, q, mu, None)
    assert _close(dip["torques"], np.cross(mu, dip["field"]), 1e-15)


def test_probe_field_and_gradient():
    """At a probe (an atom with no multipoles), E = -grad phi and
    grad E = d(field)/dr by central differences."""
    pos, cell, q, mu, theta = _system("all", n_atoms=6, seed=5)
    probe = np.array([[2.1, 3.3, 1.7]])

    def at(point):
        res = multipole_ewald(
            np.vstack([pos, point]),
            cell,
            np.append(q, 0.0),
            np.vstack([mu, np.zeros((1, 3))]),
            np.concatenate([theta, np.zeros((1, 3, 3))]),
        )
        return res["potential"][-1], res["field"][-1], res["field_gradient"][-1]

    _, field, gradient = at(probe)
    h, fd_field, fd_gradient = 1e-4, np.zeros(3), np.zeros((3, 3))
    for c in range(3):
        fd_field[c] = -_slope(lambda p: at(p)[0], probe, h * np.eye(3)[c]) / h
        fd_gradient[c] = _slope(lambda p: at(p)[1], probe, h * np.eye(3)[c]) / h
    assert _close(fd_field, field, 1e-8)
    assert _close(fd_gradient, gradient, 1e-8)
    assert _close(gradient, gradient.T, 1e-14)


def test_atom_fields_are_energy_derivatives():
    """phi_i = dE/dq_i, E_i = -dE/dmu_i and -1/3 D:gradE_i = dE/dTheta_i along a
    traceless D: the per-atom fields include the atom's own images (the energy is
    quadratic, so central differences are exact up to rounding)."""
    pos, cell, q, mu, theta = _system("all", n_atoms=6, seed=6)
    res, h = multipole_ewald(pos, cell, q, mu, theta), 1e-3
    direction = _traceless(np.random.default_rng(7), 1)[0]
    scale = np.abs(res["field"]).max()
    for i in (0, 4):
        step = np.zeros_like(q)
        step[i] = h
        d_phi = _slope(lambda x: _energy(pos, cell, x, mu, theta), q, step) / h
        assert math.isclose(d_phi, res["potential"][i], rel_tol=1e-9)
        for c in range(3):
            step = np.zeros_like(mu)
            step[i, c] = h
            d_e = _slope(lambda x: _energy(pos, cell, q, x, theta), mu, step) / h
            assert abs(-d_e - res["field"][i, c]) < 1e-9 * scale
        step = np.zeros_like(theta)
        step[i] = h * direction
        d_t = _slope(lambda x: _energy(pos, cell, q, mu, x), theta, step) / h
        expected = -np.sum(direction * res["field_gradient"][i]) / 3
        assert math.isclose(d_t, expected, rel_tol=1e-8)


def test_derivative_tensors_bare():
    """The T^(n) of 1/r are symmetric and harmonic (every trace vanishes) and
    T^(1) = -R/R^3, T^(2) = (3RR - R^2 I)/R^5."""
    v = np.random.default_rng(8).normal(size=(5, 3))
    r = np.linalg.norm(v, axis=1)
    t = _derivatives(v, _ladder(r, 0.0, 5), 5)
    assert _close(t[1], -v / r[:, None] ** 3, 1e-15)
    rr = 3 * v[:, :, None] * v[:, None, :] - r[:, None, None] ** 2 * np.eye(3)
    assert _close(t[2], rr / r[:, None, None] ** 5, 1e-15)
    for n in range(2, 6):
        trace = np.trace(t[n], axis1=1, axis2=2)
        assert np.abs(trace).max() < 1e-13 * np.abs(t[n]).max()
        assert _close(t[n], np.swapaxes(t[n], 1, n), 1e-15)


def _pair_residuals(mu1, second, length):
    """Relative misfits of Ewald, for a dipole (atom 1) and a partner (mu, Theta)
    3 A apart in a cubic box, against the direct pair plus the surface terms."""
    sep = 3.0 * Rotation.random(random_state=11).apply([0.0, 0.0, 1.0])
    pos = np.array([[10.0, 12.0, 9.0], [10.0, 12.0, 9.0]]) + [0.5 * sep, -0.5 * sep]
    mu, theta = np.array([mu1, second[0]]), np.array([np.zeros((3, 3)), second[1]])
    ewald = multipole_ewald(pos, length * np.eye(3), None, mu, theta)
    direct = multipole_direct(pos, None, mu, theta)
    m = mu.sum(axis=0)
    surface = 2 * math.pi * (m @ m) / (3 * length**3)
    shift = 4 * math.pi * m / (3 * length**3)  # the field of the surface term
    expected = {
        "energy": direct["energy"] - surface,
        "field": direct["field"] + shift,
        "field_gradient": direct["field_gradient"],
        "forces": direct["forces"],
        "torques": direct["torques"] + np.cross(mu, shift),
    }
    misfit = {k: _misfit(ewald[k], v) for k, v in expected.items()}
    return misfit, pos, mu, theta, direct["energy"], surface / abs(direct["energy"])


@pytest.mark.parametrize("partner", ["dipole", "quadrupole"])
def test_large_cell_pair(partner):
    """A dipole and a dipole (or a quadrupole) 3 A apart in a 40 A cubic box.
    The images of the cell (total dipole M) act first through the lattice sum of
    M.T(n).M, which vanishes on a cubic lattice summed in spheres, leaving the
    tin-foil surface term: E = U_pair - 2 pi |M|^2 / (3V), the fields shifted by
    + 4 pi M / (3V). The next image terms, ~ (mu^2 d^2, mu Theta d, Theta^2) / L^5,
    are 1e-5 to 4e-5 relative at L = 40 (the surface term is ~ 1e-3): they must
    fall as L^-5 (32 times from L = 40 to 80), where a wrong 1/L^3 term would
    fall only 8 times."""
    rng = np.random.default_rng(10)
    mu1 = rng.normal(size=3)
    if partner == "dipole":
        second = (rng.normal(size=3), np.zeros((3, 3)))
    else:
        second = (np.zeros(3), _traceless(rng, 1)[0])
    misfit, pos, mu, theta, u_direct, surface = _pair_residuals(mu1, second, 40.0)
    far = _pair_residuals(mu1, second, 80.0)[0]
    assert misfit["energy"] < surface / 20  # the surface term is resolved
    for key, value in misfit.items():
        assert value < 1e-4, key
        assert far[key] < value / 20, key

    # the direct pair against the textbook pair energies (R from atom 2 to atom 1)
    big_r = pos[0] - pos[1]
    r = np.linalg.norm(big_r)
    if partner == "dipole":  # [mu1.mu2 - 3 (mu1.R^)(mu2.R^)] / R^3
        u = (mu1 @ mu[1] - 3 * (mu1 @ big_r) * (mu[1] @ big_r) / r**2) / r**3
    else:  # mu1.grad phi_2(r1), phi_2 = R.Theta.R / R^5
        t = theta[1]
        grad_phi = 2 * t @ big_r / r**5 - 5 * (big_r @ t @ big_r) * big_r / r**7
        u = mu1 @ grad_phi
    assert math.isclose(u_direct, u, rel_tol=1e-13)


def _composite(offsets, charges, centre, probe_pos, probe_q, probe_mu):
    """Point charges at ``centre + offsets`` with a probe charge-and-dipole: the
    energy without the composite's internal pairs, the probe's field and force,
    and the composite's net force and torque about ``centre``."""
    pos = np.vstack([centre + offsets, probe_pos])
    q = np.append(charges, probe_q)
    mu = np.zeros((len(q), 3))
    mu[-1] = probe_mu
    res = multipole_direct(pos, q, mu, None)
    inner = multipole_direct(centre + offsets, charges)["energy"]
    f = res["forces"][:-1]
    return (
        res["energy"] - inner,
        res["field"][-1],
        res["forces"][-1],
        f.sum(axis=0),
        np.cross(offsets, f).sum(axis=0),
    )


def _point(centre, mu, theta, probe_pos, probe_q, probe_mu):
    """The same for a point multipole at ``centre`` (torque from the reference)."""
    res = multipole_direct(
        [centre, probe_pos], [0.0, probe_q], [mu, probe_mu], [theta, np.zeros((3, 3))]
    )
    f, tau = res["forces"], res["torques"]
    return res["energy"], res["field"][1], f[1], f[0], tau[0]


PROBE = (np.array([1.3, -0.4, 2.2]), 0.8, np.array([0.3, -0.5, 0.4]))


@pytest.mark.parametrize("kind", ["dipole", "quadrupole"])
def test_direct_from_point_charges(kind):
    """A dipole +-q at +-d/2 and a quadrupole +q at +-a x', -q at +-a y' (random
    axes x', y') against the point multipoles mu = q d and, from the Buckingham
    definition, Theta = 1/2 sum q (3 s s - s^2 I) = 3 q a^2 (x'x' - y'y'): energy
    with a probe charge-and-dipole, the probe's field and force, the net force and
    torque on the composite. Both are centrosymmetric, so the first neglected
    moment is two orders up: the misfit falls as d^2 (4 times per halving)."""
    rot = Rotation.random(random_state=12).as_matrix()
    centre, q = np.array([0.2, 0.1, -0.3]), 1.7
    misfits = []
    for size in (0.02, 0.01):
        if kind == "dipole":
            offsets = np.array([0.5, -0.5])[:, None] * size * rot[0]
            charges = np.array([q, -q])
        else:
            offsets = size * np.array([rot[0], -rot[0], rot[1], -rot[1]])
            charges = np.array([q, q, -q, -q])
        mu = charges @ offsets
        s2 = np.einsum("na,na->n", offsets, offsets)
        theta = 0.5 * np.einsum(
            "n,nab->ab",
            charges,
            3 * offsets[:, :, None] * offsets[:, None, :]
            - s2[:, None, None] * np.eye(3),
        )
        if kind == "quadrupole":
            assert np.allclose(
                theta,
                3 * q * size**2 * (np.outer(rot[0], rot[0]) - np.outer(rot[1], rot[1])),
            )
        exact = _composite(offsets, charges, centre, *PROBE)
        point = _point(centre, mu, theta, *PROBE)
        misfits.append([_misfit(a, b) for a, b in zip(exact, point)])
    misfits = np.array(misfits)
    assert misfits[1].max() < 1e-3
    ratio = misfits[0] / misfits[1]
    assert np.all((ratio > 3.5) & (ratio < 4.5)), ratio


def test_direct_conservation():
    """A cluster of charges, dipoles and quadrupoles: the net force and the net
    torque sum (r x F + tau) vanish, and rotating everything leaves the energy
    unchanged and rotates the forces."""
    pos, _, q, mu, theta = _system("all", n_atoms=8, seed=13)
    res = multipole_direct(pos, q, mu, theta)
    scale = np.abs(res["forces"]).max() * np.abs(pos).max()
    assert np.abs(res["forces"].sum(axis=0)).max() < 1e-13 * scale
    total = np.cross(pos, res["forces"]).sum(axis=0) + res["torques"].sum(axis=0)
    assert np.abs(total).max() < 1e-13 * scale
    rot = Rotation.random(random_state=14).as_matrix()
    turned = multipole_direct(pos @ rot.T, q, mu @ rot.T, rot @ theta @ rot.T)
    assert math.isclose(turned["energy"], res["energy"], rel_tol=1e-13)
    assert _close(turned["forces"], res["forces"] @ rot.T, 1e-13)
    assert _close(turned["torques"], res["torques"] @ rot.T, 1e-13)


def test_spherical_sum():
    """Whole cubic cells summed within a sphere of radius 8 L tend to the tin-foil
    Ewald sum plus the surface term 2 pi |M|^2 / (3V), M = sum q r + sum mu, the
    fields to E_i - 4 pi M / (3V) and the forces to F_i - q_i 4 pi M / (3V). On a
    cubic lattice the shells of M.T(n).M cancel, so the truncation error falls
    ~ (L / radius)^3: 2e-4 of the surface term here and 7e-5 of the fields,
    whose surface shift is 0.17 of them (so the 2 pi / 3V is tested to ~1e-3)."""
    rng = np.random.default_rng(15)
    length, n = 5.0, 4
    pos, cell = rng.uniform(size=(n, 3)) * length, length * np.eye(3)
    q = rng.normal(size=n)
    q -= q.mean()
    mu, theta = rng.normal(size=(n, 3)), _traceless(rng, n)
    sphere = multipole_spherical_sum(pos, cell, q, mu, theta, radius=8 * length)
    ewald = multipole_ewald(pos, cell, q, mu, theta)
    m, volume = q @ pos + mu.sum(axis=0), length**3
    surface = 2 * math.pi * (m @ m) / (3 * volume)
    shift = -4 * math.pi * m / (3 * volume)
    assert abs(sphere["energy"] - ewald["energy"] - surface) < 1e-3 * surface
    assert _close(sphere["field"], ewald["field"] + shift, 3e-4)
    assert _close(sphere["forces"], ewald["forces"] + q[:, None] * shift, 3e-4)
    assert _close(sphere["torques"], ewald["torques"] + np.cross(mu, shift), 3e-4)
    assert _close(sphere["field_gradient"], ewald["field_gradient"], 3e-4)
    assert np.abs(shift).max() > 0.1 * np.abs(ewald["field"]).max()
