"""Independent float64 NumPy references for the ``torchpme.lib`` tests.

Everything here is written from the definitions in the API specification (§3.2–3.4)
and from textbook mathematics; nothing is imported from ``torchpme``.
"""

import math

import numpy as np

__all__ = [
    "bspline",
    "dense_gather",
    "dense_spread",
    "fft_integers",
    "kvectors_ewald",
    "kvectors_mesh",
    "node_offsets",
    "p3m_u2",
    "reciprocal_cell",
    "reference_plan",
    "weights_1d",
]

TRICLINIC_CELL = np.array([[5.0, 0.0, 0.0], [0.5, 4.5, 0.0], [0.3, 0.2, 4.0]])


def reciprocal_cell(cell):
    """Rows ``b_d`` with ``b_i · a_j = 2π δ_ij``."""
    return 2.0 * np.pi * np.linalg.inv(np.asarray(cell, dtype=np.float64)).T


def fft_integers(n, half=False):
    """Integer FFT frequencies: ``fftfreq(n)·n`` (or ``rfftfreq(n)·n`` if half)."""
    if half:
        return np.rint(np.fft.rfftfreq(n) * n).astype(np.int64)
    return np.rint(np.fft.fftfreq(n) * n).astype(np.int64)


def _kgrid(cell, ns, half_last):
    b = reciprocal_cell(cell)
    m0 = fft_integers(int(ns[0]))
    m1 = fft_integers(int(ns[1]))
    m2 = fft_integers(int(ns[2]), half=half_last)
    grid = np.stack(np.meshgrid(m0, m1, m2, indexing="ij"), axis=-1)
    return grid.astype(np.float64) @ b, grid


def kvectors_mesh(cell, ns):
    """``(nx, ny, nz//2+1, 3)`` k-vectors and their integer triplets."""
    return _kgrid(cell, ns, True)


def kvectors_ewald(cell, ns):
    """``(nx·ny·nz, 3)`` k-vectors (C order) and integer triplets."""
    k, m = _kgrid(cell, ns, False)
    return k.reshape(-1, 3), m.reshape(-1, 3)


def node_shifts(n):
    """Ascending shifts of the ``n`` stencil nodes relative to the base node."""
    return np.arange(1 - (n + 1) // 2, 1 + n // 2)


def node_offsets(n):
    """Positions of the stencil nodes relative to the reference point.

    Odd ``n``: the reference point is the nearest node, nodes at integer offsets.
    Even ``n``: the reference point is the midpoint ``base + 1/2``.
    """
    shifts = node_shifts(n).astype(np.float64)
    return shifts if n % 2 == 1 else shifts - 0.5


def lagrange_basis(x, n):
    """Lagrange basis polynomials on :func:`node_offsets`, shape ``(n,) + x.shape``."""
    x = np.asarray(x, dtype=np.float64)
    nodes = node_offsets(n)
    out = []
    for j, xj in enumerate(nodes):
        w = np.ones_like(x)
        for m, xm in enumerate(nodes):
            if m != j:
                w = w * (x - xm) / (xj - xm)
        out.append(w)
    return np.stack(out)


def bspline(t, n):
    """Centred cardinal B-spline of order ``n`` (``n``-fold box convolution).

    ``M_n(t) = 1/(n-1)! Σ_k (-1)^k C(n,k) (t + n/2 - k)_+^{n-1}``.
    """
    t = np.asarray(t, dtype=np.float64)
    total = np.zeros_like(t)
    for k in range(n + 1):
        y = t + n / 2.0 - k
        if n == 1:
            term = (y > 0).astype(np.float64)
        else:
            term = np.where(y > 0, y, 0.0) ** (n - 1)
        total = total + (-1) ** k * math.comb(n, k) * term
    return total / math.factorial(n - 1)


def bspline_by_convolution(t, n, samples=4001):
    """``M_n`` from the recursion ``M_n(t) = ∫_{-1/2}^{1/2} M_{n-1}(t - s) ds``.

    Evaluated with the trapezoidal rule; only used to check :func:`bspline`.
    """
    s = np.linspace(-0.5, 0.5, samples)
    t = np.asarray(t, dtype=np.float64)
    if n == 1:
        return ((t >= -0.5) & (t < 0.5)).astype(np.float64)
    values = bspline(t[..., None] - s, n - 1)
    # np.trapz before NumPy 2
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # noqa: NPY201
    return trapezoid(values, s, axis=-1)


def p3m_weights(x, n):
    """B-spline assignment weights ``M_n(x - offset_j)``, shape ``(n,) + x.shape``."""
    x = np.asarray(x, dtype=np.float64)
    return np.stack([bspline(x - o, n) for o in node_offsets(n)])


def weights_1d(x, n, method):
    """1-D interpolation weights of the given method, shape ``(n,) + x.shape``."""
    if method == "Lagrange":
        return lagrange_basis(x, n)
    if method == "P3M":
        return p3m_weights(x, n)
    raise AssertionError(method)


def reference_plan(positions, cell, ns, n):
    """Base node ``(N, 3)`` and offset ``x`` ``(N, 3)`` from the centring rule."""
    ns = np.asarray(ns, dtype=np.int64)
    u = ns * (np.asarray(positions) @ np.linalg.inv(np.asarray(cell)))
    if n % 2 == 0:
        base = np.floor(u)
        x = u - (base + 0.5)
    else:
        base = np.round(u)  # ties to even, like torch.round
        x = u - base
    return base.astype(np.int64), x


def _stencil(positions, cell, ns, n, method):
    base, x = reference_plan(positions, cell, ns, n)
    w = weights_1d(x, n, method)  # (n, N, 3)
    shifts = node_shifts(n)
    ns = np.asarray(ns, dtype=np.int64)
    idx = np.mod(base[None, :, :] + shifts[:, None, None], ns)  # (n, N, 3)
    return idx, w


def dense_spread(positions, cell, ns, n, method, q):
    """Mesh ``(C, nx, ny, nz)`` with ``q_i W`` accumulated at every stencil node."""
    idx, w = _stencil(positions, cell, ns, n, method)
    q = np.asarray(q, dtype=np.float64)
    mesh = np.zeros((q.shape[1], *[int(s) for s in ns]))
    for i in range(q.shape[0]):
        for a in range(n):
            for b in range(n):
                for c in range(n):
                    weight = w[a, i, 0] * w[b, i, 1] * w[c, i, 2]
                    node = (idx[a, i, 0], idx[b, i, 1], idx[c, i, 2])
                    mesh[(slice(None), *node)] += q[i] * weight
    return mesh


def dense_gather(positions, cell, ns, n, method, mesh):
    """``(N, C)`` values ``Σ_nodes mesh[:, node] W``."""
    idx, w = _stencil(positions, cell, ns, n, method)
    mesh = np.asarray(mesh, dtype=np.float64)
    n_atoms = idx.shape[1]
    out = np.zeros((n_atoms, mesh.shape[0]))
    for i in range(n_atoms):
        for a in range(n):
            for b in range(n):
                for c in range(n):
                    weight = w[a, i, 0] * w[b, i, 1] * w[c, i, 2]
                    node = (idx[a, i, 0], idx[b, i, 1], idx[c, i, 2])
                    out[i] += mesh[(slice(None), *node)] * weight
    return out


def p3m_u2_lattice(cell, ns, n):
    """``U²(k) = Π_d sinc(m_d / n_d)^{2n}``: the B-spline transform along the lattice
    vectors, from the integer frequencies ``m`` of the rfft layout."""
    m = np.meshgrid(
        np.fft.fftfreq(ns[0]) * ns[0],
        np.fft.fftfreq(ns[1]) * ns[1],
        np.fft.rfftfreq(ns[2]) * ns[2],
        indexing="ij",
    )
    return np.prod([np.sinc(m[d] / ns[d]) for d in range(3)], axis=0) ** (2 * n)


def p3m_u2(cell, ns, n):
    """``U²(k) = Π_d sinc(k_d h_d / 2π)^{2n}`` on the mesh k-vectors, ``h_d = ‖a_d‖/n_d``
    (torch-pme 0.5's Cartesian form, exact for orthorhombic cells only).

    ``np.sinc(t) = sin(πt)/(πt)``.
    """
    k, _ = kvectors_mesh(cell, ns)
    h = np.linalg.norm(np.asarray(cell), axis=1) / np.asarray(ns, dtype=np.float64)
    kappa = k * h
    return np.prod(np.sinc(kappa / (2 * np.pi)), axis=-1) ** (2 * n), k, kappa, h
