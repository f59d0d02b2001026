"""Checks of the NumPy slab (2-D Ewald) reference in reference_slab.py.

These test the yardstick itself, against properties and limits that do not share
its formulas: alpha-independence, finite differences, rotations and bases of the
plane, translations and permutations, a brute-force image sum, and the field of a
uniformly charged sheet.
"""

import math

import numpy as np
import pytest
from open_systems import assert_same, close
from reference_slab import in_plane_basis, slab_ewald
from scipy.spatial.transform import Rotation

A1 = np.array([8.0, 0.3, 0.0])
A2 = np.array([2.5, 7.5, 0.0])


def _system(n_atoms=16, charged=False, seed=0, thickness=8.0, rotate=True):
    """Random ions in a triclinic cell whose plane is tilted at random."""
    rng = np.random.default_rng(seed)
    a1, a2 = A1, A2
    if rotate:
        rot = Rotation.random(random_state=seed + 100).as_matrix()
        a1, a2 = a1 @ rot.T, a2 @ rot.T
    _, n, _, _ = in_plane_basis(a1, a2)
    frac = rng.uniform(size=(n_atoms, 2))
    pos = (
        frac @ np.array([a1, a2])
        + rng.uniform(-thickness / 2, thickness / 2, (n_atoms, 1)) * n
    )
    q = rng.normal(size=n_atoms)
    if charged:
        q[0] += 1.5  # a clear net charge
    else:
        q -= q.mean()
    return pos, q, a1, a2


@pytest.mark.parametrize("charged", [False, True])
def test_alpha_independence(charged):
    pos, q, a1, a2 = _system(20, charged=charged, seed=1)
    if charged:
        assert abs(q.sum()) > 1.0
    else:
        assert abs(q.sum()) < 1e-12
    ref = slab_ewald(pos, q, a1, a2, alpha=0.5)
    for alpha in (0.3, 0.8, None):
        assert_same(slab_ewald(pos, q, a1, a2, alpha=alpha), ref, 1e-10, q)


def test_cutoffs_converged():
    """The default accuracy agrees with a much tighter one (60 ions)."""
    pos, q, a1, a2 = _system(60, charged=True, seed=2, thickness=12.0)
    ref = slab_ewald(pos, q, a1, a2, alpha=0.45, accuracy=1e-20)
    assert_same(slab_ewald(pos, q, a1, a2), ref, 1e-13, q)


@pytest.mark.parametrize("charged", [False, True])
def test_forces_finite_differences(charged):
    pos, q, a1, a2 = _system(8, charged=charged, seed=3)
    _, _, forces = slab_ewald(pos, q, a1, a2)
    h = 1e-5
    fd = np.zeros_like(pos)
    for i in range(len(q)):
        for c in range(3):
            p, m = pos.copy(), pos.copy()
            p[i, c] += h
            m[i, c] -= h
            fd[i, c] = -(slab_ewald(p, q, a1, a2)[0] - slab_ewald(m, q, a1, a2)[0]) / (
                2 * h
            )
    assert close(fd, forces, 1e-6), np.abs(fd - forces).max()
    # net force: zero (Newton's third law holds pair by pair)
    assert np.abs(forces.sum(axis=0)).max() < 1e-12 * np.abs(forces).max()


@pytest.mark.parametrize("charged", [False, True])
def test_rotation_and_lattice_basis(charged):
    pos, q, a1, a2 = _system(14, charged=charged, seed=4)
    ref = slab_ewald(pos, q, a1, a2)
    rot = Rotation.random(random_state=7).as_matrix()
    e, phi, f = slab_ewald(pos @ rot.T, q, a1 @ rot.T, a2 @ rot.T)
    assert_same((e, phi, f @ rot), ref, 1e-12, q)
    for b1, b2 in [(a1, a1 + a2), (a2, a1), (a1 - 3 * a2, a2), (-a1, a2 + 2 * a1)]:
        # default alpha = sqrt(pi / A) is the same for every basis
        assert_same(slab_ewald(pos, q, b1, b2), ref, 1e-12, q)
        assert_same(slab_ewald(pos, q, b1, b2, alpha=0.4), ref, 1e-11, q)


@pytest.mark.parametrize("charged", [False, True])
def test_translation_and_permutation(charged):
    pos, q, a1, a2 = _system(14, charged=charged, seed=5)
    ref = slab_ewald(pos, q, a1, a2)
    rng = np.random.default_rng(6)
    # a rigid translation by any vector (normal component included)
    assert_same(slab_ewald(pos + rng.normal(size=3) * 5, q, a1, a2), ref, 1e-12, q)
    # each atom by its own lattice vector
    shifts = rng.integers(-3, 4, size=(len(q), 2)) @ np.array([a1, a2])
    assert_same(slab_ewald(pos + shifts, q, a1, a2), ref, 1e-12, q)
    # permutation
    perm = rng.permutation(len(q))
    e, phi, f = slab_ewald(pos[perm], q[perm], a1, a2)
    inv = np.argsort(perm)
    assert_same((e, phi[inv], f[inv]), ref, 1e-12, q)


def _multipole_free_cell():
    """A neutral cell with no dipole and no quadrupole: a random (charged) group S,
    differenced three times, S -> S - S(shifted by d), for three shifts d. The
    interaction of two such cells falls as 1/r^7, so the cell-by-cell image sum
    over a disc of radius R misses ~ R^-5 (per-ion potentials ~ R^-2, fields
    ~ R^-3)."""
    rng = np.random.default_rng(5)
    a1 = np.array([3.0, 0.2, 0.4])
    a2 = np.array([1.1, 2.8, -0.3])
    _, n, _, _ = in_plane_basis(a1, a2)
    pos = rng.uniform(size=(3, 2)) @ np.array([a1, a2]) + rng.uniform(-1, 1, (3, 1)) * n
    q = np.array([1.0, -0.7, 0.4])
    for d in ([0.31, 0.12, 0.2], [-0.1, 0.27, 0.15], 0.3 * n + 0.05 * a1):
        pos = np.concatenate([pos, pos + np.asarray(d)])
        q = np.concatenate([q, -q])
    return pos, q, a1, a2


def test_brute_force_image_sum():
    """Against the plain cell-by-cell sum of q_i q_j / |r_ij + m| over a disc of
    cells |m| <= R. Reached (R = 40 spacings ~ 110 A, 4559 cells): energy to
    ~6e-15 relative (~1e-11 of the image part alone); potentials to ~1e-8 and
    forces to ~1.4e-9 raw, ~4e-10 and ~4e-11 after Richardson extrapolation in
    R^-3 from R = 20, 40."""
    pos, q, a1, a2 = _multipole_free_cell()
    assert abs(q.sum()) < 1e-14
    assert np.abs(q @ pos).max() < 1e-14
    e, phi, f = slab_ewald(pos, q, a1, a2)

    m_max = 40
    m1, m2 = np.meshgrid(np.arange(-m_max, m_max + 1), np.arange(-m_max, m_max + 1))
    images = m1.reshape(-1, 1) * a1 + m2.reshape(-1, 1) * a2
    length = np.linalg.norm(images, axis=1)
    area = np.linalg.norm(np.cross(a1, a2))
    spacing = min(area / np.linalg.norm(a) for a in (a1, a2))  # between lattice rows
    d = pos[:, None, :] - pos[None, :, :]
    pot = np.zeros((len(images), len(q)))
    fld = np.zeros((len(images), len(q), 3))
    for s in range(0, len(images), 1000):
        rv = d[None] + images[s : s + 1000, None, None, :]
        r = np.linalg.norm(rv, axis=-1)
        inv = np.divide(1.0, r, out=np.zeros_like(r), where=r > 0)
        pot[s : s + 1000] = inv @ q
        fld[s : s + 1000] = np.einsum("mijc,mij,j->mic", rv, inv**3, q)

    def brute(radius):  # the disc |m| <= radius lies inside the box of images
        sel = length <= radius * spacing
        outside_in = np.argsort(-length[sel])  # smallest terms first
        phi_bf = np.array([math.fsum(col) for col in pot[sel][outside_in].T])
        return phi_bf, q[:, None] * fld[sel].sum(axis=0)

    phi_bf, f_bf = brute(m_max)
    e_bf = 0.5 * math.fsum(q * phi_bf)
    e_images = e - 0.5 * math.fsum(pot[length == 0][0] * q)
    assert abs(e_images) > 1e-3  # the images matter
    assert abs(e - e_bf) < 3e-14 * abs(e), (e, e_bf)
    assert abs(e - e_bf) < 1e-10 * abs(e_images)
    assert close(phi_bf, phi, 3e-8), np.abs(phi - phi_bf).max()
    assert close(f_bf, f, 5e-9), np.abs(f - f_bf).max()
    # the tails of potentials and fields fall as R^-3: extrapolate
    phi_half, f_half = brute(m_max // 2)
    w = 8.0 / 7.0
    assert close(w * phi_bf + (1 - w) * phi_half, phi, 2e-9)
    assert close(w * f_bf + (1 - w) * f_half, f, 3e-10)


def test_charged_sheet_limit():
    """Charges far apart along the normal feel the sheets' uniform field
    2 pi sigma: F_z on the upper one = 2 pi q1 q2 / A, corrections ~ e^{-k h}."""
    pos, _, a1, a2 = _system(2, seed=8)
    area, n, _, _ = in_plane_basis(a1, a2)
    q = np.array([0.7, 1.3])
    lower = pos[0]
    energies, upper_potentials = [], []
    for h in (40.0, 47.0):
        p = np.array([lower, pos[1] + (h - (pos[1] - lower) @ n) * n])
        e, phi, f = slab_ewald(p, q, a1, a2)
        sheet = 2 * math.pi * q[0] * q[1] / area
        assert abs(f[1] @ n - sheet) < 1e-12 * sheet
        assert abs(f[0] @ n + sheet) < 1e-12 * sheet
        assert np.abs(f[1] - (f[1] @ n) * n).max() < 1e-12 * sheet
        energies.append(e)
        upper_potentials.append(phi[1])
    assert abs((energies[1] - energies[0]) + sheet * 7.0) < 1e-12 * sheet * 7.0
    # the sheet of the lower charges: potential falls by 2 pi q1 / A per length
    drop = 2 * math.pi * q[0] / area * 7.0
    assert abs(upper_potentials[0] - upper_potentials[1] - drop) < 1e-12 * drop
    # one ion per cell: no force
    _, _, f1 = slab_ewald(pos[:1], q[:1], a1, a2)
    assert np.abs(f1).max() < 1e-14
