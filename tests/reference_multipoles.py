"""Independent NumPy reference: point charges, dipoles and quadrupoles, periodic
(Ewald), open (bare pair sum) and periodic summed over a sphere of image cells.

Nothing here imports torch or torchpme. Written from the physics, following

* W. Smith, "Point multipoles in the Ewald summation", CCP5 Newsletter 46, 18
  (1998) (the B_n functions of the real-space sum);
* A. Aguado and P. A. Madden, J. Chem. Phys. 119, 7471 (2003),
  doi:10.1063/1.1605941 (multipolar Ewald sums);
* S. W. de Leeuw, J. W. Perram and E. R. Smith, Proc. R. Soc. A 373, 27 (1980),
  doi:10.1098/rspa.1980.0135 (the surface term of a spherical sum),

in float64, Gaussian units, prefactor 1.

Conventions. Atom j at r_j carries a charge q_j, a dipole mu_j and a traceless
symmetric quadrupole Theta_j in Buckingham's convention,
Theta = 1/2 sum q (3 s s - s^2 I) for point charges q at offsets s. With
R = r - r_j its potential is

    phi_j(r) = q/R + mu.R/R^3 + Theta:RR/R^5 = D_j (1/R),
    D_j = q_j - mu_j.grad + 1/3 Theta_j:grad grad    (grad acting on r).

The field is E = -grad phi and the field gradient (grad E)_ab = d_a E_b (symmetric).
The energy of atom i in the potential phi of the others is
U_i = q_i phi - mu_i.E - 1/3 Theta_i:grad E (the Taylor expansion of the charge
distribution; the trace part drops out as laplace(phi) = 0 there). With phi_i,
E_i, grad E_i at atom i from every other atom and every periodic image (the own
images included, the atom itself left out), the energy and its per-atom pieces are

    E = sum_i e_i,   e_i = 1/2 (q_i phi_i - mu_i.E_i - 1/3 Theta_i:grad E_i),

i.e. 1/2 sum over ordered pairs (i, j, n), j = i allowed for images n != 0. The
forces and torques are

    F_i = -dE/dr_i = q_i E_i + mu_i.grad E_i + 1/3 Theta_i:grad grad E_i,
          (F_a = q E_a + mu_b d_b E_a + 1/3 Theta_bc d_b d_c E_a)
    tau_i = mu_i x E_i + 2/3 eps_abc Theta_bd (grad E)_dc   (component a),

the own-image terms cancelling in F between n and -n. The quadrupole torque is
-dE/dtheta for Theta -> (1 + W) Theta (1 - W), W v = dtheta x v: the change of
-1/3 Theta:G is -1/3 tr(W (Theta G - G Theta)), whose axial vector gives the above.

Pair sums. For a radial g(R) with ladder functions B_k, (1/R d/dR) B_k = -B_{k+1},
the Cartesian derivatives T^(n) = d^n g obey (h_k = (-1)^k B_k)

    d_{a1..an} h_k = R_{an} d_{a1..a(n-1)} h_{k+1}
                     + sum_{i<n} delta_{ai an} d_{a1..(no ai)..a(n-1)} h_{k+1},

and the m-th derivative of the potential at r_i from j is
q_j T^(m) - T^(m+1).mu_j + 1/3 T^(m+2):Theta_j at R = r_i - r_j - n.
Smith's B_n: B_0 = erfc(alpha R)/R,
B_n = [(2n - 1) B_{n-1} + 2^n alpha^(2n-1) exp(-alpha^2 R^2)/sqrt(pi)] / R^2;
alpha = 0 gives the bare ladder B_n = (2n-1)!!/R^(2n+1).

Ewald (tin-foil boundary, k = 0 left out). The erf part of every pair is summed
in reciprocal space, with
S(k) = sum_j (q_j + i mu_j.k - 1/3 k.Theta_j.k) exp(i k.r_j) (D_j of e^{ik.(r-r_j)}
is conj of that summand times e^{ik.r}) and
d^m phi_i(recip) = (4 pi / V) sum_{k != 0} exp(-k^2/4 alpha^2)/k^2
                   Re[(i k)^m exp(i k.r_i) conj S(k)],
so E(recip) = (2 pi / V) sum_k exp(-k^2/4 alpha^2)/k^2 |S(k)|^2. The self terms
take the j = i, n = 0 erf interaction back out: with erf(ar)/r = c0 + c1 r^2 +
c2 r^4 + ..., c0 = 2a/sqrt(pi), c1 = -2a^3/(3 sqrt(pi)), c2 = a^5/(5 sqrt(pi)),

    phi_self = c0 q,   grad phi_self = -2 c1 mu,
    grad grad phi_self = 2 c1 q I + 16/3 c2 Theta,
    (grad^3 phi_self)_abc = -8 c2 (mu_a delta_bc + mu_b delta_ac + mu_c delta_ab),

giving E_self = -a/sqrt(pi) q^2 - 2a^3/(3 sqrt(pi)) |mu|^2
- 8a^5/(45 sqrt(pi)) Theta:Theta per atom (they exert no force and no torque). A net
charge Q gets the neutralising background, phi_i -= pi Q/(V a^2), i.e.
E -= pi Q^2/(2 V a^2); the dipole and (traceless) quadrupole short-range parts
integrate to zero, so every output is alpha-independent, net charge or not.
Cutoffs: with x^2 = -ln(tail) + n ln(x^2) + 2 (n = 3 + the highest source
order), the real space keeps R < x/alpha and the reciprocal space |k| <= 2 alpha x:
the neglected terms ~ x^n exp(-x^2) are below ``tail`` relative.

Spherical sum. Summing whole cells n.cell with |n.cell| <= radius gives, as the
radius grows, E_sphere = E_tinfoil + 2 pi |M|^2 / (3V), M = sum q r + sum mu (the
positions as given), and the fields E_i - 4 pi M / (3V) (de Leeuw et al.).
"""

import math

import numpy as np
from scipy.special import erfc

__all__ = [
    "ewald_cutoffs",
    "multipole_direct",
    "multipole_ewald",
    "multipole_spherical_sum",
]

_CHUNK = 4096  # pair-images per batch of derivative tensors (~30 MB at rank 5)
_EPS = np.zeros((3, 3, 3))
_EPS[0, 1, 2] = _EPS[1, 2, 0] = _EPS[2, 0, 1] = 1.0
_EPS[0, 2, 1] = _EPS[2, 1, 0] = _EPS[1, 0, 2] = -1.0


def _inputs(positions, charges, dipoles, quadrupoles):
    """float64 (pos, q, mu, theta, source order), theta checked traceless symmetric."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(pos)
    q = np.zeros(n) if charges is None else np.asarray(charges, float).reshape(n)
    mu = np.zeros((n, 3)) if dipoles is None else np.asarray(dipoles, float)
    theta = np.zeros((n, 3, 3)) if quadrupoles is None else np.asarray(quadrupoles)
    mu, theta = mu.reshape(n, 3), theta.astype(np.float64).reshape(n, 3, 3)
    scale = max(np.abs(theta).max(initial=0.0), 1e-300)
    if np.abs(theta - theta.transpose(0, 2, 1)).max(initial=0.0) > 1e-12 * scale:
        raise ValueError("quadrupoles must be symmetric")
    if np.abs(np.trace(theta, axis1=1, axis2=2)).max(initial=0.0) > 1e-12 * scale:
        raise ValueError("quadrupoles must be traceless (Buckingham convention)")
    order = 2 if theta.any() else (1 if mu.any() else 0)
    return pos, q, mu, theta, order


def _ladder(r, alpha, n_max):
    """Smith's B_0..B_n_max at distances r (alpha = 0: the bare 1/r ladder)."""
    gauss = np.exp(-((alpha * r) ** 2)) / math.sqrt(math.pi)
    b = [erfc(alpha * r) / r]
    for n in range(1, n_max + 1):
        b.append(((2 * n - 1) * b[-1] + 2**n * alpha ** (2 * n - 1) * gauss) / r**2)
    return b


def _derivatives(vectors, ladder, n_max):
    """[T^(0), ..., T^(n_max)], T^(n) = d^n g at ``vectors``, shape (P, 3, ..., 3)."""
    eye, memo = np.eye(3), {}

    def d(n, k):  # d^n h_k, h_k = (-1)^k B_k; a_n is the last index
        if (n, k) not in memo:
            if n == 0:
                out = (-1.0) ** k * ladder[k]
            else:
                lead = d(n - 1, k + 1)
                out = lead[..., None] * vectors.reshape((-1,) + (1,) * (n - 1) + (3,))
                if n >= 2:
                    z = d(n - 2, k + 1)[..., None, None] * eye  # axes .., a_i, a_n
                    for i in range(1, n):
                        out = out + np.moveaxis(z, n - 1, i)
            memo[n, k] = out
        return memo[n, k]

    return [d(n, 0) for n in range(n_max + 1)]


def _pair_sum(pos, q, mu, theta, order, i, j, vectors, alpha):
    """d^m phi (m = 0..3) at the atoms from the pair-images (i, j, R = r_i - r_j - n)
    with the radial function of the ladder B_k(alpha): list of (N, 3, ..., 3)."""
    n_atoms = len(pos)
    out = [np.zeros((n_atoms,) + (3,) * m) for m in range(4)]
    for start in range(0, len(i), _CHUNK):
        ii, jj = i[start : start + _CHUNK], j[start : start + _CHUNK]
        v = vectors[start : start + _CHUNK]
        r = np.sqrt(np.einsum("pa,pa->p", v, v))
        t = _derivatives(v, _ladder(r, alpha, 3 + order), 3 + order)
        for m in range(4):
            part = q[jj].reshape((-1,) + (1,) * m) * t[m]
            if order >= 1:
                part = part - np.einsum("p...a,pa->p...", t[m + 1], mu[jj])
            if order >= 2:
                part = part + np.einsum("p...ab,pab->p...", t[m + 2], theta[jj]) / 3
            np.add.at(out[m], ii, part)
    return out


def _observables(d, q, mu, theta):
    """The returned dict from d^m phi at the atoms (see the module docstring)."""
    phi, field, grad_e = d[0], -d[1], -d[2]
    atom = 0.5 * (
        q * phi
        - np.einsum("na,na->n", mu, field)
        - np.einsum("nab,nab->n", theta, grad_e) / 3
    )
    forces = (
        q[:, None] * field
        + np.einsum("nb,nba->na", mu, grad_e)
        - np.einsum("nbc,nbca->na", theta, d[3]) / 3
    )
    torques = np.cross(mu, field) + 2 / 3 * np.einsum(
        "abc,nbd,ndc->na", _EPS, theta, grad_e
    )
    return {
        "energy": float(atom.sum()),
        "atom_energies": atom,
        "potential": phi,
        "field": field,
        "field_gradient": grad_e,
        "forces": forces,
        "torques": torques,
    }


def _image_pairs(d, cell, shifts, r_cut=np.inf):
    """(i, j, R) for R = d_ij - shift @ cell, |R| < r_cut, without i = j at shift 0
    (d: (N, N, 3) differences r_i - r_j, shifts: integer vectors (M, 3))."""
    n = len(d)
    i, j, s = np.meshgrid(
        np.arange(n), np.arange(n), np.arange(len(shifts)), indexing="ij"
    )
    i, j, s = i.ravel(), j.ravel(), s.ravel()
    v = d[i, j] - shifts[s] @ cell
    keep = ~((i == j) & ~shifts[s].any(axis=1)) & (np.linalg.norm(v, axis=1) < r_cut)
    return i[keep], j[keep], v[keep]


def _box(reach):
    """Integer vectors with |m_d| <= reach_d, as floats (M, 3)."""
    axes = [np.arange(-r, r + 1) for r in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(float)


def multipole_direct(positions, charges=None, dipoles=None, quadrupoles=None):
    """Open (cluster) multipoles: the bare pair sum over i != j.

    Returns the dict of :func:`multipole_ewald` (energy, atom_energies, potential,
    field, field_gradient, forces, torques) for no periodicity.
    """
    pos, q, mu, theta, order = _inputs(positions, charges, dipoles, quadrupoles)
    d = pos[:, None, :] - pos[None, :, :]
    i, j, v = _image_pairs(d, np.eye(3), np.zeros((1, 3)))
    return _observables(_pair_sum(pos, q, mu, theta, order, i, j, v, 0.0), q, mu, theta)


def multipole_spherical_sum(
    positions, cell, charges=None, dipoles=None, quadrupoles=None, radius=10.0
):
    """Periodic multipoles summed directly over the whole cells n.cell (cell rows =
    lattice vectors) with |n.cell| <= radius: the spherical-shape limit, which tends
    to the tin-foil Ewald sum plus 2 pi |M|^2 / (3V) as the radius grows."""
    pos, q, mu, theta, order = _inputs(positions, charges, dipoles, quadrupoles)
    cell = np.asarray(cell, dtype=np.float64)
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # plane spacings
    shifts = _box([math.ceil(radius / h) for h in heights])
    shifts = shifts[np.linalg.norm(shifts @ cell, axis=1) <= radius]
    i, j, v = _image_pairs(pos[:, None, :] - pos[None, :, :], cell, shifts)
    return _observables(_pair_sum(pos, q, mu, theta, order, i, j, v, 0.0), q, mu, theta)


def ewald_cutoffs(cell, order=2, alpha=None, tail=1e-14):
    """(alpha, r_cut, k_cut) of :func:`multipole_ewald` for a source order
    0 (charges), 1 (dipoles) or 2 (quadrupoles)."""
    volume = abs(np.linalg.det(np.asarray(cell, dtype=np.float64)))
    if alpha is None:
        # more work in the cheap reciprocal sum (N K) than in real space (N^2 M)
        alpha = 2.0 * math.sqrt(math.pi) / volume ** (1 / 3)
    if not (0.0 < tail < 1.0):
        raise ValueError("tail must lie in (0, 1)")
    x2 = -math.log(tail)
    for _ in range(50):  # fixed point of x^2 = -ln(tail) + n ln(x^2) + 2
        x2 = -math.log(tail) + (3 + order) * math.log(x2) + 2.0
    x = math.sqrt(x2)
    return float(alpha), x / alpha, 2.0 * alpha * x


def multipole_ewald(
    positions,
    cell,
    charges=None,
    dipoles=None,
    quadrupoles=None,
    alpha=None,
    tail=1e-14,
):
    """Ewald sum of point multipoles in a periodic cell (rows = lattice vectors,
    triclinic allowed), tin-foil boundary, neutralising background for a net charge.

    Returns a dict: ``energy`` (float), ``atom_energies`` (N,) (they sum to the
    energy), ``potential`` (N,), ``field`` (N, 3), ``field_gradient`` (N, 3, 3)
    (d_a E_b), ``forces`` (N, 3) = -dE/dr_i and ``torques`` (N, 3), all at each
    atom from every other atom and image (module docstring). An atom with no
    charge, dipole or quadrupole is a probe: its potential and field are those of
    the others at its position.
    """
    pos, q, mu, theta, order = _inputs(positions, charges, dipoles, quadrupoles)
    cell = np.asarray(cell, dtype=np.float64)
    volume = abs(np.linalg.det(cell))
    alpha, r_cut, k_cut = ewald_cutoffs(cell, order, alpha, tail)

    # real space: pair vectors wrapped into the cell, then a box of images that
    # holds the sphere r_cut (fractional |offset| <= 1/2 after wrapping)
    inv = np.linalg.inv(cell)
    d = pos[:, None, :] - pos[None, :, :]
    d = d - np.round(d @ inv) @ cell
    shifts = _box([math.ceil(r_cut * np.linalg.norm(b)) + 1 for b in inv.T])
    i, j, v = _image_pairs(d, cell, shifts, r_cut)
    out = _pair_sum(pos, q, mu, theta, order, i, j, v, alpha)

    # reciprocal space: every k != 0 with |k| <= k_cut (k.a_d = 2 pi m_d)
    recip = 2.0 * math.pi * inv.T
    m = _box([math.ceil(k_cut * np.linalg.norm(a) / (2 * math.pi)) for a in cell])
    k = m[m.any(axis=1)] @ recip
    k2 = np.einsum("ka,ka->k", k, k)
    k, k2 = k[k2 <= k_cut**2], k2[k2 <= k_cut**2]
    phase = np.exp(1j * pos @ k.T)  # (N, K)
    kthetak = np.einsum("ka,nab,kb->nk", k, theta, k)
    structure = ((q[:, None] + 1j * mu @ k.T - kthetak / 3) * phase).sum(axis=0)
    weight = 4.0 * math.pi / volume * np.exp(-k2 / (4 * alpha**2)) / k2
    a = weight * phase * np.conj(structure)  # (N, K)
    out[0] = out[0] + a.sum(axis=1).real
    out[1] = out[1] + (1j * a @ k).real
    out[2] = out[2] - np.einsum("nk,ka,kb->nab", a, k, k).real
    out[3] = out[3] + np.einsum("nk,ka,kb,kc->nabc", -1j * a, k, k, k).real

    # self terms (the Taylor coefficients of erf(alpha r)/r) and the background
    sp = math.sqrt(math.pi)
    c0, c1, c2 = 2 * alpha / sp, -2 * alpha**3 / (3 * sp), alpha**5 / (5 * sp)
    eye = np.eye(3)
    out[0] = out[0] - c0 * q - math.pi * q.sum() / (volume * alpha**2)
    out[1] = out[1] + 2 * c1 * mu
    out[2] = out[2] - 2 * c1 * q[:, None, None] * eye - 16 / 3 * c2 * theta
    out[3] = out[3] + 8 * c2 * (
        np.einsum("na,bc->nabc", mu, eye)
        + np.einsum("nb,ac->nabc", mu, eye)
        + np.einsum("nc,ab->nabc", mu, eye)
    )
    return _observables(out, q, mu, theta)
