"""Reciprocal space: k-vectors, mesh sizes and the FFT filter, as pure functions.

The reciprocal cell is ``B = 2π (cell⁻¹)ᵀ``; its rows ``b_d`` satisfy
``b_i · a_j = 2π δ_ij``. A k-vector with integer frequencies ``m`` is
``k = m_0 b_0 + m_1 b_1 + m_2 b_2``. Frequencies follow the FFT layout:
``0, 1, …, ⌈n/2⌉−1, −⌊n/2⌋, …, −1`` on a full axis, ``0 … ⌊n/2⌋`` on the
half axis of a real-to-complex transform.
"""

import math
from typing import List

import torch

__all__ = [
    "fft_frequencies",
    "filter_mesh",
    "kvectors_for_ewald",
    "kvectors_for_mesh",
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


def kvectors_for_ewald(cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
    """All ``n0·n1·n2`` k-vectors of the full FFT layout, flattened C-order."""
    return _kgrid(cell, ns, False).reshape(-1, 3)


def mesh_size(lengths: List[float], mesh_spacing: float) -> List[int]:
    """Mesh points per lattice vector: the smallest power of two ≥ ``2L/h + 1``.

    Args:
        lengths: the three lattice-vector lengths ``‖a_d‖``.
        mesh_spacing: target spacing ``h`` (same length unit).
    """
    sizes: List[int] = []
    for length in lengths:
        target = 2.0 * (length / mesh_spacing) + 1.0
        n = 1
        while n < target:
            n *= 2
        sizes.append(n)
    return sizes


def filter_mesh(
    mesh: torch.Tensor, kernel: torch.Tensor, fft_norm: str, ifft_norm: str
) -> torch.Tensor:
    """Convolve a real mesh with a kernel given in reciprocal space.

    ``irfftn(rfftn(mesh) · kernel)`` over the three spatial axes.

    Args:
        mesh: ``(..., n0, n1, n2)`` real values, e.g. ``(C, n0, n1, n2)``.
        kernel: filter broadcastable to ``(..., n0, n1, n2//2+1)``.
        fft_norm, ifft_norm: ``"ortho"``, ``"forward"`` or ``"backward"``.

    Returns:
        the filtered mesh, shape of ``mesh``.
    """
    transformed = torch.fft.rfftn(mesh, norm=fft_norm, dim=(-3, -2, -1))
    return torch.fft.irfftn(
        transformed * kernel,
        norm=ifft_norm,
        dim=(-3, -2, -1),
        s=(mesh.shape[-3], mesh.shape[-2], mesh.shape[-1]),
    )


def ewald_size(lengths: List[float], lr_wavelength: float) -> List[int]:
    """Ewald k-grid size per axis, ``ceil(k_cut ‖a_d‖ / 2π)`` with ``k_cut = 2π/λ``.

    The k-set is the box of all integer triplets of an FFT layout of this size, so
    it holds frequencies ``|m_d| ≲ n_d/2`` (an effective cutoff of about ``π/λ``).
    """
    k_cut = 2.0 * math.pi / lr_wavelength
    return [math.ceil(k_cut * length / 2.0 / math.pi) for length in lengths]


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


def p3m_influence(
    kvectors: torch.Tensor,
    cell: torch.Tensor,
    ns: List[int],
    interpolation_nodes: int,
    mode: int,
    differences: List[float],
    cartesian: bool = False,
) -> torch.Tensor:
    """P3M influence function on the mesh k-vectors (no aliasing sums).

    The B-spline charge assignment acts along the lattice vectors, so its transform
    is ``U²(k) = Π_d sinc(κ_d/2π)^{2n}`` with ``κ_d = k·a_d / n_d`` (``= 2π m_d/n_d``
    for integer frequencies ``m``). With ``cartesian=True`` it uses instead
    ``κ = k ⊙ h``, the Cartesian components times ``h_d = ‖a_d‖/n_d``, as torch-pme
    0.5 did; the two agree for orthorhombic cells only. Mode 0 returns ``1/U²``; modes 1–3 return
    ``(k·D)^mode / (U² ‖D‖^{4·mode})`` with the difference operator
    ``D_d = (1/h_d) Σ_m (c_m/m) sin(m κ_d)``. Entries with a zero denominator are 0.

    Reference: Hockney & Eastwood (1988); Deserno & Holm, J. Chem. Phys. 109, 7678
    (1998), doi:10.1063/1.477414.
    """
    lengths = torch.linalg.norm(cell, dim=-1)
    sizes = torch.tensor(ns, dtype=cell.dtype, device=cell.device)
    # (..., 1, 1, 1, 3): one spacing per lattice vector, broadcast over the mesh
    h = (lengths / sizes).unsqueeze(-2).unsqueeze(-2).unsqueeze(-2)
    if cartesian:
        kappa = kvectors * h
    else:
        kappa = (
            torch.einsum(
                "...j,...dj->...d",
                kvectors,
                cell.unsqueeze(-3).unsqueeze(-3).unsqueeze(-3),
            )
            / sizes
        )
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
    nonzero = denominator != 0
    safe = torch.where(nonzero, denominator, torch.ones_like(denominator))
    return torch.where(nonzero, numerator / safe, torch.zeros_like(denominator))
