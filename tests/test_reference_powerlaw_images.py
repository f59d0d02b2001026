"""The NumPy 1/r^p slab and wire references against direct image sums.

A direct image sum, smoothly truncated at a large radius R (window
w = erfc((r - R) / sigma) / 2 in the in-plane or axial distance r) plus its
continuum tail (1/A) int d^2r f (1 - w), resp. (1/L) int dz f (1 - w): by the
Poisson summation formula the neglected part is the Fourier transform of the
smooth f (1 - w) at the nonzero reciprocal vectors, ~ exp(-(k sigma)^2 / 4); two
window widths agree with each other. The other checks of the references are in
test_reference_powerlaw_open.py.
"""

import math

import numpy as np
import pytest
from reference_powerlaw_open import powerlaw_slab, powerlaw_wire
from scipy.integrate import quad
from scipy.special import erfc
from test_reference_powerlaw_open import (
    SLAB_P,
    WIRE_P,
    _assert_same,
    _slab_system,
    _wire_system,
)


def _window(r, big_r, sigma):
    return 0.5 * erfc((r - big_r) / sigma)


def _brute_slab(pos, q, a1, a2, p, width):
    """Direct image sum with the window w(in-plane distance) plus the continuum
    tail; sigma = width * max |a_i| (the smallest nonzero reciprocal vector is
    >= 2 pi / max |a_i|), R = 16 sigma, images up to R + 7 sigma."""
    n_atoms = len(q)
    c = np.cross(a1, a2)
    area = np.linalg.norm(c)
    nn = c / area
    b1, b2 = np.cross(a2, nn) / area, np.cross(nn, a1) / area
    sigma = width * max(np.linalg.norm(a1), np.linalg.norm(a2))
    big_r, r_max = 16.0 * sigma, 23.0 * sigma
    r_lo, r_hi = big_r / 2, big_r + 8.0 * sigma  # w = 1 below r_lo, 0 above r_hi
    d = pos[:, None, :] - pos[None, :, :]
    d = d - np.round(d @ b1)[..., None] * a1 - np.round(d @ b2)[..., None] * a2
    z = d @ nn
    n1 = math.ceil(r_max * np.linalg.norm(b1)) + 1
    n2 = math.ceil(r_max * np.linalg.norm(b2)) + 1
    m1, m2 = np.meshgrid(np.arange(-n1, n1 + 1), np.arange(-n2, n2 + 1), indexing="ij")
    images = m1.reshape(-1, 1) * a1 + m2.reshape(-1, 1) * a2
    phi_pair = np.zeros((n_atoms, n_atoms))
    grad_pair = np.zeros((n_atoms, n_atoms, 3))
    opts = {"epsabs": 0.0, "epsrel": 2e-14, "limit": 200}
    for i in range(n_atoms):
        for j in range(n_atoms):
            rv = d[i, j] + images
            if i == j:
                rv = rv[np.any(images != 0.0, axis=1)]
            r2 = np.einsum("mc,mc->m", rv, rv)
            zz = z[i, j]
            w = _window(np.sqrt(np.maximum(r2 - zz * zz, 0.0)), big_r, sigma)
            phi_pair[i, j] = np.sum(w * r2 ** (-p / 2))
            grad_pair[i, j] = -p * np.einsum("m,mc->c", w * r2 ** (-p / 2 - 1), rv)
            # continuum tail (2 pi / A) int r dr f (1 - w); in-plane gradient 0
            tail = quad(
                lambda r, zz=zz: (
                    r * (r * r + zz * zz) ** (-p / 2) * (1 - _window(r, big_r, sigma))
                ),
                r_lo,
                r_hi,
                **opts,
            )[0]
            tail += (r_hi**2 + zz * zz) ** (1 - p / 2) / (p - 2)
            dtail = quad(
                lambda r, zz=zz: (
                    r
                    * (r * r + zz * zz) ** (-p / 2 - 1)
                    * (1 - _window(r, big_r, sigma))
                ),
                r_lo,
                r_hi,
                **opts,
            )[0]
            dtail = -p * zz * dtail - zz * (r_hi**2 + zz * zz) ** (-p / 2)
            phi_pair[i, j] += 2 * math.pi / area * tail
            grad_pair[i, j] += 2 * math.pi / area * dtail * nn
    potentials = phi_pair @ q
    return (
        0.5 * q @ potentials,
        potentials,
        -q[:, None] * np.einsum("ijc,j->ic", grad_pair, q),
    )


def _axial_tail(rho2, p, z0, n_terms=40):
    """int_{z0}^inf (rho^2 + z^2)^(-p/2) dz by the binomial series in rho^2 / z^2
    (rho << z0 here)."""
    total, coef = 0.0, 1.0  # coef = binomial(-p/2, n)
    for n in range(n_terms):
        total += coef * rho2**n * z0 ** (1 - p - 2 * n) / (p + 2 * n - 1)
        coef *= (-p / 2 - n) / (n + 1)
    return total


def _brute_wire(pos, q, a, p, width):
    """Direct image sum with the window w(axial distance) plus the continuum
    tail; sigma = width * L, R = 16 sigma, images up to R + 7 sigma."""
    n_atoms = len(q)
    length = np.linalg.norm(a)
    e = a / length
    sigma = width * length
    big_r, r_max = 16.0 * sigma, 23.0 * sigma
    r_lo, r_hi = big_r / 2, big_r + 8.0 * sigma
    d = pos[:, None, :] - pos[None, :, :]
    d = d - np.round(d @ e / length)[..., None] * a
    z = d @ e
    rho_v = d - z[..., None] * e
    m = np.arange(-math.ceil(r_max / length) - 1, math.ceil(r_max / length) + 2)
    phi_pair = np.zeros((n_atoms, n_atoms))
    grad_pair = np.zeros((n_atoms, n_atoms, 3))
    opts = {"epsabs": 0.0, "epsrel": 2e-14, "limit": 200}
    for i in range(n_atoms):
        for j in range(n_atoms):
            mm = m[m != 0] if i == j else m
            zeta_m = z[i, j] + mm * length
            rho2 = float(rho_v[i, j] @ rho_v[i, j])
            r2 = rho2 + zeta_m**2
            w = _window(np.abs(zeta_m), big_r, sigma)
            phi_pair[i, j] = np.sum(w * r2 ** (-p / 2))
            rv = rho_v[i, j] + np.outer(zeta_m, e)
            grad_pair[i, j] = -p * np.einsum("m,mc->c", w * r2 ** (-p / 2 - 1), rv)
            # continuum tail (2 / L) int_{R/2}^inf dz f (1 - w); axial gradient 0
            tail = quad(
                lambda t, rho2=rho2: (
                    (rho2 + t * t) ** (-p / 2) * (1 - _window(t, big_r, sigma))
                ),
                r_lo,
                r_hi,
                **opts,
            )[0]
            tail += _axial_tail(rho2, p, r_hi)
            dtail = quad(
                lambda t, rho2=rho2: (
                    (rho2 + t * t) ** (-p / 2 - 1) * (1 - _window(t, big_r, sigma))
                ),
                r_lo,
                r_hi,
                **opts,
            )[0]
            dtail = -p * (dtail + _axial_tail(rho2, p + 2, r_hi))
            phi_pair[i, j] += 2 / length * tail
            grad_pair[i, j] += 2 / length * dtail * rho_v[i, j]
    potentials = phi_pair @ q
    return (
        0.5 * q @ potentials,
        potentials,
        -q[:, None] * np.einsum("ijc,j->ic", grad_pair, q),
    )


@pytest.mark.parametrize("p", SLAB_P)
def test_slab_direct_sum(p):
    pos, q, a1, a2 = _slab_system(8, seed=1)
    ref = _brute_slab(pos, q, a1, a2, p, 2.2)
    _assert_same(powerlaw_slab(pos, q, a1, a2, p), ref, 1e-13)
    # the yardstick's own independence of the window
    _assert_same(_brute_slab(pos, q, a1, a2, p, 2.8), ref, 1e-13)


@pytest.mark.parametrize("p", WIRE_P)
def test_wire_direct_sum(p):
    pos, q, a = _wire_system(8, seed=2)
    ref = _brute_wire(pos, q, a, p, 2.2)
    _assert_same(powerlaw_wire(pos, q, a, p), ref, 1e-13)
    _assert_same(_brute_wire(pos, q, a, p, 3.0), ref, 1e-13)
