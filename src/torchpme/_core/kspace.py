"""Reciprocal space: k-vectors, mesh sizes and the FFT filter, as pure functions.

The reciprocal cell is ``B = 2π (cell⁻¹)ᵀ``; its rows ``b_d`` satisfy
``b_i · a_j = 2π δ_ij``. A k-vector with integer frequencies ``m`` is
``k = m_0 b_0 + m_1 b_1 + m_2 b_2``. Frequencies follow the FFT layout:
``0, 1, …, ⌈n/2⌉−1, −⌊n/2⌋, …, −1`` on a full axis, ``0 … ⌊n/2⌋`` on the
half axis of a real-to-complex transform.
"""

import math
from typing import List, Optional, Tuple

import torch

from . import workload

__all__ = [
    "fft_frequencies",
    "half_kvectors_for_ewald",
    "kvectors_for_ewald",
    "kvectors_for_mesh",
    "mesh_k_squared",
    "mesh_size",
    "reciprocal_cell",
]


def reciprocal_cell(cell: torch.Tensor) -> torch.Tensor:
    """``2π (cell⁻¹)ᵀ``: rows are the reciprocal lattice vectors.

    ``inv_ex`` does not synchronise with an accelerator (no singularity check).
    """
    inverse = torch.linalg.inv_ex(cell)[0]
    return 2.0 * math.pi * inverse.transpose(-1, -2)


def fft_frequencies(
    n: int, half: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Integer frequencies of an FFT axis of length ``n`` (as ``dtype``)."""
    if half:
        return torch.arange(n // 2 + 1, dtype=dtype, device=device)
    m = torch.arange(n, dtype=dtype, device=device)
    return torch.where(m < (n + 1) // 2, m, m - n)


def _kgrid(cell: torch.Tensor, ns: List[int], half_last: bool) -> torch.Tensor:
    b = reciprocal_cell(cell)
    m0 = fft_frequencies(ns[0], False, cell.dtype, cell.device)
    m1 = fft_frequencies(ns[1], False, cell.dtype, cell.device)
    m2 = fft_frequencies(ns[2], half_last, cell.dtype, cell.device)
    k0 = m0[:, None] * b[..., 0:1, :]
    k1 = m1[:, None] * b[..., 1:2, :]
    k2 = m2[:, None] * b[..., 2:3, :]
    return (
        k0[..., :, None, None, :]
        + k1[..., None, :, None, :]
        + k2[..., None, None, :, :]
    )


def kvectors_for_mesh(cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
    """k-vectors ``(n0, n1, n2//2+1, 3)`` in the order of ``torch.fft.rfftn``.

    A batch of cells ``(B, 3, 3)`` gives ``(B, n0, n1, n2//2+1, 3)``.
    """
    return _kgrid(cell, ns, True)


def mesh_k_squared(
    cell: torch.Tensor, ns: List[int], rows: Optional[List[int]] = None
) -> torch.Tensor:
    """Squared norms of the mesh k-vectors, ``(n0, n1, n2//2+1)``, without them.

    ``|k|² = mᵀ G m`` with the metric ``G = B Bᵀ`` of the reciprocal cell, grouped
    by powers of the last frequency ``m₂`` as ``A(m₀, m₁) + (L(m₀, m₁) + G₂₂ m₂) m₂``:
    the planes ``A`` and ``L`` are small, so only three passes touch the full grid
    (forward and backward), instead of building ``(…, 3)`` k-vectors. A batch of
    cells ``(B, 3, 3)`` gives ``(B, n0, n1, n2//2+1)``. With ``rows = [a, b]``
    only the rows ``a … b−1`` of the second axis (one rank's band of a
    distributed spectrum).
    """
    b = reciprocal_cell(cell)
    g = (b @ b.transpose(-1, -2)).unsqueeze(-3).unsqueeze(-3)  # (..., 1, 1, 3, 3)
    m0 = fft_frequencies(ns[0], False, cell.dtype, cell.device)[:, None]
    m1 = fft_frequencies(ns[1], False, cell.dtype, cell.device)[None, :]
    if rows is not None:
        m1 = m1[:, rows[0] : rows[1]]
    m2 = fft_frequencies(ns[2], True, cell.dtype, cell.device)
    plane = (
        g[..., 0, 0] * (m0 * m0)
        + g[..., 1, 1] * (m1 * m1)
        + 2.0 * g[..., 0, 1] * (m0 * m1)
    )  # (..., n0, n1)
    linear = 2.0 * (g[..., 0, 2] * m0 + g[..., 1, 2] * m1)  # (..., n0, n1)
    g22 = g[..., 2, 2].unsqueeze(-1)  # (..., 1, 1, 1)
    # one grid-sized buffer, updated in place: each fresh one costs its page
    # faults; autograd keeps none of them (m2 is a constant)
    k_sq = linear.unsqueeze(-1) + g22 * m2
    return k_sq.mul_(m2).add_(plane.unsqueeze(-1))


def kvectors_for_ewald(cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
    """All ``n0·n1·n2`` k-vectors of the full FFT layout, flattened C-order."""
    return _kgrid(cell, ns, False).reshape(-1, 3)


def half_kvectors_for_ewald(
    cell: torch.Tensor, ns: List[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One k-vector of each ``±k`` pair of :func:`kvectors_for_ewald`'s set, and its
    multiplicity.

    Ewald sums of charges and of dipoles are even in ``k`` (``G(k) cos(k·r)`` and
    ``G(k) k (μ·k) cos(k·r)``), so a sum over the whole set equals a sum over this
    half with weights 2 for the pairs, at half the cost. The set is not quite
    symmetric: on an axis of even size ``n`` the frequency ``−n/2`` has no partner
    ``+n/2``; such k-vectors, and ``k = 0``, are kept with weight 1.

    Returns:
        ``(K_h, 3)`` k-vectors (``k_h ≈ K/2``) and ``(K_h,)`` weights in the cell's
        dtype.
    """
    axes = [fft_frequencies(n, False, torch.float64, cell.device) for n in ns]
    grid = torch.stack(torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij"), -1)
    m = grid.reshape(-1, 3)
    lonely = torch.zeros(m.shape[0], dtype=torch.bool, device=cell.device)
    for axis in range(3):
        if ns[axis] % 2 == 0:
            lonely = lonely | (m[:, axis] == -(ns[axis] // 2))
    m0, m1, m2 = m[:, 0], m[:, 1], m[:, 2]
    # one half of the nonzero triplets: the first nonzero of (m2, m1, m0) positive
    positive = (m2 > 0) | ((m2 == 0) & ((m1 > 0) | ((m1 == 0) & (m0 > 0))))
    zero = (m0 == 0) & (m1 == 0) & (m2 == 0)
    keep = positive | lonely | zero
    single = (lonely | zero)[keep]
    weights = torch.where(single, 1.0, 2.0).to(cell.dtype)
    return m[keep].to(cell.dtype) @ reciprocal_cell(cell), weights


def mesh_size(lengths: List[float], mesh_spacing: float) -> List[int]:
    """Mesh points per lattice vector: the smallest power of two ≥ ``2L/h + 1``.

    A mesh beyond the memory budget is refused with a ``ValueError`` naming
    ``mesh_spacing`` (:func:`torchpme._core.workload.check_mesh`), before any
    allocation; not in TorchScript.

    Args:
        lengths: the three lattice-vector lengths ``‖a_d‖``.
        mesh_spacing: target spacing ``h`` (same length unit).
    """
    if not torch.jit.is_scripting():
        _check_mesh_spacing(lengths, mesh_spacing)
    sizes: List[int] = []
    for length in lengths:
        target = 2.0 * (length / mesh_spacing) + 1.0
        n = 1
        while n < target:
            n *= 2
        sizes.append(n)
    return sizes


@torch.jit.unused
def _check_mesh_spacing(lengths: List[float], mesh_spacing: float) -> None:
    """The size check of :func:`mesh_size`, on sizes computed in floating point
    (a spacing that rounds ``L/h`` to infinity must not loop forever)."""
    targets = [2.0 * (length / mesh_spacing) + 1.0 for length in lengths]
    # past 2⁶⁰ points per axis the power of two adds nothing to a refusal
    sizes = [2.0 ** math.ceil(math.log2(t)) if t < 2.0**60 else t for t in targets]
    text = f"{mesh_spacing:g} for lattice vectors of lengths " + ", ".join(
        f"{length:.4g}" for length in lengths
    )
    workload.check_mesh(sizes, "mesh_spacing", text)


def ewald_size(
    lengths: List[float], lr_wavelength: float, n_atoms: int = 0
) -> List[int]:
    """Ewald k-grid size per axis, ``ceil(k_cut ‖a_d‖ / 2π)`` with ``k_cut = 2π/λ``.

    The k-set is the box of all integer triplets of an FFT layout of this size, so
    it holds frequencies ``|m_d| ≲ n_d/2`` (an effective cutoff of about ``π/λ``).
    A k-set beyond the memory budget, or (with ``n_atoms``) a sum over more
    k-vectors times atoms than the work limit, is refused with a ``ValueError``
    naming ``lr_wavelength`` (:func:`torchpme._core.workload.check_kvectors`);
    not in TorchScript.
    """
    if not torch.jit.is_scripting():
        _check_lr_wavelength(lengths, lr_wavelength, n_atoms)
    k_cut = 2.0 * math.pi / lr_wavelength
    return [math.ceil(k_cut * length / 2.0 / math.pi) for length in lengths]


@torch.jit.unused
def _check_lr_wavelength(
    lengths: List[float], lr_wavelength: float, n_atoms: int
) -> None:
    """The size check of :func:`ewald_size`, in floating point."""
    ratios = [length / lr_wavelength for length in lengths]
    sizes = [float(math.ceil(r)) if r < 2.0**60 else r for r in ratios]
    workload.check_kvectors(sizes, n_atoms, lr_wavelength)


def difference_coefficients(order: int) -> List[float]:
    """Coefficients ``c_{o,m}`` of the order-``2o`` central difference operator.

    In Fourier space the operator is ``D(k) = (1/h) Σ_{m=1}^{o} (c_{o,m}/m) sin(m k h)``
    with ``c_{o,m} = 2 (−1)^{m+1} (o!)² / ((o−m)! (o+m)!)``. For ``o = 6, m = 6`` the
    exact value ``−1/462`` is replaced by ``−1/465``, the value torch-pme 0.5 uses,
    so that results stay compatible.
    """
    fact = math.factorial
    coefficients = [
        2.0 * (-1) ** (m + 1) * fact(order) ** 2 / (fact(order - m) * fact(order + m))
        for m in range(1, order + 1)
    ]
    if order == 6:
        coefficients[5] = -1.0 / 465.0
    return coefficients


def _ratio_or_zero(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is nonzero, else 0."""
    nonzero = denominator != 0
    safe = torch.where(nonzero, denominator, torch.ones_like(denominator))
    return torch.where(nonzero, numerator / safe, torch.zeros_like(denominator))


def p3m_influence(
    cell: torch.Tensor,
    ns: List[int],
    interpolation_nodes: int,
    mode: int,
    differences: List[float],
    cartesian: bool = False,
    rows: Optional[List[int]] = None,
) -> torch.Tensor:
    """P3M influence function on the mesh k-vectors (no aliasing sums).

    The B-spline charge assignment acts along the lattice vectors, so its transform
    is ``U²(k) = Π_d sinc(κ_d/2π)^{2n}`` with ``κ_d = k·a_d / n_d = 2π m_d/n_d`` for
    integer frequencies ``m`` (independent of the cell's shape). With
    ``cartesian=True`` it uses instead ``κ = k ⊙ h``, the Cartesian components times
    ``h_d = ‖a_d‖/n_d``, as torch-pme 0.5 did; the two agree for orthorhombic cells
    only. Mode 0 returns ``1/U²``; modes 1–3 return
    ``(k·D)^mode / (U² ‖D‖^{4·mode})`` with the difference operator
    ``D_d = (1/h_d) Σ_m (c_m/m) sin(m κ_d)``. Entries with a zero denominator are 0.

    Args:
        cell: ``(3, 3)`` cell (or a batch ``(B, 3, 3)``).
        ns: mesh size, three ints.
        interpolation_nodes: B-spline order ``n``.
        mode: 0, 1, 2 or 3.
        differences: coefficients from :func:`difference_coefficients`.
        cartesian: use torch-pme 0.5's Cartesian ``κ``.
        rows: ``[a, b]``: only the rows ``a … b−1`` of the second axis.

    Returns:
        ``(n0, n1, n2//2+1)`` (with a leading batch axis for a batch of cells).

    Reference: Hockney & Eastwood (1988); Deserno & Holm, J. Chem. Phys. 109, 7678
    (1998), doi:10.1063/1.477414.
    """
    if mode == 0 and not cartesian:
        # separable and independent of the cell: a product of three 1-D factors
        # |m / n| ≤ 1/2, where sinc ≥ 2/π: each 1-D factor is inverted, and the
        # product is formed once, then broadcast (no copy) over a batch of cells
        factors: List[torch.Tensor] = []
        for axis in range(3):
            m = fft_frequencies(ns[axis], axis == 2, cell.dtype, cell.device)
            factors.append(torch.sinc(m / ns[axis]) ** (-2 * interpolation_nodes))
        if rows is not None:
            factors[1] = factors[1][rows[0] : rows[1]]
        inverse = factors[0][:, None, None] * factors[1][None, :, None] * factors[2]
        return inverse.expand(cell.shape[:-2] + inverse.shape)
    kvectors = kvectors_for_mesh(cell, ns)
    if rows is not None:
        kvectors = kvectors[..., rows[0] : rows[1], :, :]
    lengths = torch.linalg.norm(cell, dim=-1)
    sizes = torch.tensor(ns, dtype=cell.dtype, device=cell.device)
    # (..., 1, 1, 1, 3): one spacing per lattice vector, broadcast over the mesh
    h = (lengths / sizes).unsqueeze(-2).unsqueeze(-2).unsqueeze(-2)
    if cartesian:
        kappa = kvectors * h
    else:
        projected = cell.unsqueeze(-3).unsqueeze(-3).unsqueeze(-3)
        kappa = torch.einsum("...j,...dj->...d", kvectors, projected) / sizes
    u2 = torch.prod(torch.sinc(kappa / (2.0 * math.pi)), dim=-1) ** (
        2 * interpolation_nodes
    )
    if mode == 0:
        numerator = torch.ones_like(u2)
        denominator = u2
    else:
        d = torch.zeros_like(kvectors)
        for m, c in enumerate(differences):
            d = d + (c / (m + 1)) * torch.sin((m + 1) * kappa)
        d = d / h
        numerator = torch.sum(kvectors * d, dim=-1) ** mode
        denominator = u2 * torch.sum(d * d, dim=-1) ** (2 * mode)
    return _ratio_or_zero(numerator, denominator)
