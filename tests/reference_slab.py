"""Independent NumPy reference: the 2-D periodic (slab) Ewald sum.

Nothing here imports torchpme. Written from the formulas of

* D. E. Parry, "The electrostatic potential in the surface region of an ionic
  crystal", Surf. Sci. 49, 433 (1975), doi:10.1016/0039-6028(75)90353-7
  (see also I.-C. Yeh and M. L. Berkowitz, J. Chem. Phys. 111, 3155 (1999),
  doi:10.1063/1.479595, and M. Kawata and M. Mikami, Chem. Phys. Lett. 340, 157
  (2001), doi:10.1016/S0009-2614(01)00393-1),

in float64, for point charges with the bare interaction 1/r (prefactor 1),
periodic along two lattice vectors a1, a2 (any 3-D vectors, the plane need not be
the xy plane) and open along the plane normal n = a1 x a2 / |a1 x a2|.

Notation: A = |a1 x a2|; for a pair (i, j), z_ij = (r_i - r_j).n and rho_ij is the
in-plane part of r_i - r_j; m runs over the in-plane lattice vectors
m1 a1 + m2 a2; k runs over the in-plane reciprocal lattice 2 pi (m1 b1 + m2 b2),
b_i.a_j = delta_ij with b1, b2 in the plane. The potential at charge i is

    phi_i = sum_j sum'_m erfc(alpha |r_ij + m|) / |r_ij + m|
            (the term j = i, m = 0 left out)
          + sum_j sum_{k != 0} pi / (A k) cos(k.rho_ij)
                [ e^{k z} erfc(k/(2 alpha) + alpha z)
                + e^{-k z} erfc(k/(2 alpha) - alpha z) ]      (z = z_ij)
          + sum_j psi0(z_ij),
                psi0(z) = -(2 pi / A) [ z erf(alpha z)
                                        + exp(-alpha^2 z^2) / (alpha sqrt(pi)) ]
          - 2 alpha / sqrt(pi) q_i,

the j = i terms of the two k-space sums included (the self term takes them back
out of the smooth part). The energy is E = 1/2 sum_i q_i phi_i and the forces are
F_i = -dE/dr_i, the analytic derivatives of the same sums:

    d/dz [e^{kz} erfc(a + alpha z) + e^{-kz} erfc(a - alpha z)]
        = k [e^{kz} erfc(a + alpha z) - e^{-kz} erfc(a - alpha z)]
    (the Gaussian terms cancel), and d psi0 / dz = -(2 pi / A) erf(alpha z).

Products e^{2ab} erfc(a + b) (with a = k / (2 alpha), b = +-alpha z, so 2ab = +-kz)
are written as exp(-a^2 - b^2) erfcx(a + b) for a + b >= 0 and as
2 e^{2ab} - exp(-a^2 - b^2) erfcx(-(a + b)) for a + b < 0 (where 2ab < 0), which
neither overflows nor cancels.

A net charge is allowed and handled by the same formula, with no extra term: psi0
is the alpha-independent regularisation (1/A) int d^2rho erf(alpha r)/r minus an
infinite alpha-independent constant; as alpha -> infinity it becomes
-(2 pi / A)|z|, the potential of a uniformly charged sheet taken as zero in the
sheet. So potentials, energy and forces do not depend on alpha for charged cells
either (the tests check this); the forces are the physical ones.

Cutoffs: with x^2 = -ln(accuracy) + 2, the real-space sum keeps every image with
in-plane distance up to x / alpha (a whole box of images of the Lagrange-Gauss
reduced basis, which contains that disc) and the k-space sum every k with
|k| <= 2 alpha x; both neglected tails are ~ exp(-x^2). The default
alpha = sqrt(pi / A) balances the two. Everything is pairwise and vectorised:
O(N^2 (images + k vectors)) memory and time.
"""

import math

import numpy as np
from scipy.special import erf, erfc, erfcx

__all__ = ["in_plane_basis", "slab_ewald"]


def _reduce(a1, a2):
    """Lagrange-Gauss reduction of a 2-D lattice basis (same lattice, short and
    nearly orthogonal vectors)."""
    u, v = np.array(a1, dtype=np.float64), np.array(a2, dtype=np.float64)
    if u @ u > v @ v:
        u, v = v, u
    for _ in range(1000):
        v = v - np.round((u @ v) / (u @ u)) * u
        if v @ v >= u @ u:
            break
        u, v = v, u
    return u, v


def in_plane_basis(a1, a2):
    """(area A, unit normal n, b1, b2) of the lattice spanned by a1, a2, with
    b_i.a_j = delta_ij and b1, b2 in the plane."""
    a1 = np.asarray(a1, dtype=np.float64)
    a2 = np.asarray(a2, dtype=np.float64)
    c = np.cross(a1, a2)
    area = float(np.linalg.norm(c))
    if not area > 0.0:
        raise ValueError("a1 and a2 must be linearly independent")
    n = c / area
    b1 = np.cross(a2, n) / area
    b2 = np.cross(n, a1) / area
    return area, n, b1, b2


def _h(a, b):
    """e^{2ab} erfc(a + b) for a > 0, without overflow."""
    t = a + b
    g = np.exp(-(a * a) - b * b) * erfcx(np.abs(t))
    return np.where(t >= 0.0, g, 2.0 * np.exp(np.minimum(2.0 * a * b, 0.0)) - g)


def slab_ewald(positions, charges, a1, a2, alpha=None, accuracy=1e-14):
    """Slab (2-D periodic, open along the normal) Ewald sum of point charges, 1/r.

    Parameters
    ----------
    positions : (N, 3) array of Cartesian positions
    charges : (N,) array of charges (any net charge)
    a1, a2 : the two in-plane lattice vectors (3-D, any orientation, any angle)
    alpha : Ewald splitting parameter (inverse length); default sqrt(pi / A)
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
    a1, a2 = _reduce(a1, a2)
    area, n, b1, b2 = in_plane_basis(a1, a2)
    if alpha is None:
        alpha = math.sqrt(math.pi / area)
    alpha = float(alpha)
    if not (0.0 < accuracy < 1.0):
        raise ValueError("accuracy must lie in (0, 1)")
    x = math.sqrt(-math.log(accuracy) + 2.0)

    # pair separations: normal part z and in-plane part rho, rho wrapped to the cell
    d = pos[:, None, :] - pos[None, :, :]  # (N, N, 3), r_i - r_j
    z = d @ n  # (N, N)
    rho = d - z[..., None] * n
    s1 = np.round(rho @ b1)
    s2 = np.round(rho @ b2)
    rho_w = rho - s1[..., None] * a1 - s2[..., None] * a2

    # ---- real space: all images with in-plane distance <= r_cut ----
    r_cut = x / alpha
    n1 = math.ceil(r_cut * np.linalg.norm(b1) + 0.5)
    n2 = math.ceil(r_cut * np.linalg.norm(b2) + 0.5)
    m1, m2 = np.meshgrid(
        np.arange(-n1, n1 + 1, dtype=np.float64),
        np.arange(-n2, n2 + 1, dtype=np.float64),
        indexing="ij",
    )
    m1, m2 = m1.ravel(), m2.ravel()
    images = m1[:, None] * a1 + m2[:, None] * a2  # (M, 3)
    origin = (m1 == 0.0) & (m2 == 0.0)
    rv = (rho_w + z[..., None] * n)[:, :, None, :] + images  # (N, N, M, 3)
    r = np.sqrt(np.einsum("ijmc,ijmc->ijm", rv, rv))
    skip = np.eye(n_atoms, dtype=bool)[:, :, None] & origin[None, None, :]
    r = np.where(skip, np.inf, r)
    ec = erfc(alpha * r)
    phi_pair = np.sum(ec / r, axis=2)  # (N, N)
    # d/dr [erfc(alpha r)/r] / r, times r_vec
    dfr = -(ec / r + 2.0 * alpha / math.sqrt(math.pi) * np.exp(-((alpha * r) ** 2)))
    grad_pair = np.einsum("ijm,ijmc->ijc", dfr / (r * r), rv)

    # ---- reciprocal space, k != 0 (half of the lattice, doubled) ----
    k_cut = 2.0 * alpha * x
    g1 = 2.0 * math.pi * b1
    g2 = 2.0 * math.pi * b2
    k1 = math.ceil(k_cut * np.linalg.norm(a1) / (2.0 * math.pi))
    k2 = math.ceil(k_cut * np.linalg.norm(a2) / (2.0 * math.pi))
    h1, h2 = np.meshgrid(
        np.arange(-k1, k1 + 1, dtype=np.float64),
        np.arange(-k2, k2 + 1, dtype=np.float64),
        indexing="ij",
    )
    h1, h2 = h1.ravel(), h2.ravel()
    half = (h1 > 0) | ((h1 == 0) & (h2 > 0))
    kvec = h1[half, None] * g1 + h2[half, None] * g2  # (K, 3)
    kn = np.linalg.norm(kvec, axis=1)
    keep = kn <= k_cut
    kvec, kn = kvec[keep], kn[keep]
    if kn.size:
        a = kn / (2.0 * alpha)  # (K,)
        b = alpha * z[..., None]  # (N, N, 1)
        hp = _h(a, b)  # e^{kz} erfc(a + alpha z)
        hm = _h(a, -b)  # e^{-kz} erfc(a - alpha z)
        f = hp + hm
        fp = kn * (hp - hm)  # df/dz
        kr = rho_w @ kvec.T  # (N, N, K)
        c, s = np.cos(kr), np.sin(kr)
        pref = 2.0 * math.pi / (area * kn)  # 2 for the -k half
        phi_pair = phi_pair + np.sum(pref * c * f, axis=2)
        grad_pair = (
            grad_pair
            - np.einsum("ijk,kc->ijc", pref * s * f, kvec)
            + np.sum(pref * c * fp, axis=2)[..., None] * n
        )

    # ---- k = 0 ----
    az = alpha * z
    phi_pair = phi_pair - 2.0 * math.pi / area * (
        z * erf(az) + np.exp(-(az * az)) / (alpha * math.sqrt(math.pi))
    )
    grad_pair = grad_pair - (2.0 * math.pi / area * erf(az))[..., None] * n

    potentials = phi_pair @ q - 2.0 * alpha / math.sqrt(math.pi) * q
    energy = 0.5 * float(q @ potentials)
    forces = -q[:, None] * np.einsum("ijc,j->ic", grad_pair, q)
    return energy, potentials, forces
