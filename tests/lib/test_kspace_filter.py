"""Tests of ``KSpaceKernel``, ``KSpaceFilter`` and ``P3MKSpaceFilter`` (API.md §3.4).

References: FFT normalisation factors from the PyTorch conventions quoted in the
spec, analytic convolutions of plane waves compatible with the cell, the P3M
influence function ``1/U²`` (and the modes 1–3 formula) written in NumPy, and the
``_kfilter`` reference values printed in the spec.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch

from torchpme.lib import KSpaceFilter, KSpaceKernel, P3MKSpaceFilter

from ._reference import TRICLINIC_CELL, kvectors_mesh, p3m_u2, p3m_u2_lattice

SKEWED_CELL = np.array([[3.0, 0.4, -0.2], [1.1, 2.7, 0.3], [-0.6, 0.9, 3.3]])
NORMS = ["ortho", "forward", "backward"]


def _t(array, dtype=torch.float64):
    return torch.tensor(np.asarray(array), dtype=dtype)


class OnesKernel(KSpaceKernel):
    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(k_sq)


class GaussianKernel(KSpaceKernel):
    """``exp(-σ² k² / 2)``; a 1-D ``sigma`` of length C gives one filter per channel."""

    def __init__(self, sigma: torch.Tensor):
        super().__init__()
        self.sigma = sigma

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        if self.sigma.dim() == 0:
            return torch.exp(-0.5 * self.sigma**2 * k_sq)
        return torch.exp(-0.5 * self.sigma[:, None, None, None] ** 2 * k_sq)


class CoulombKernel(KSpaceKernel):
    """``4π exp(-σ² k²/2) / k²``, exactly 0 at ``k² = 0`` (CoulombPotential, §4)."""

    def __init__(self, smearing: float):
        super().__init__()
        self.smearing = smearing

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        zero = k_sq == 0
        safe = torch.where(zero, torch.ones_like(k_sq), k_sq)
        value = 4 * torch.pi * torch.exp(-0.5 * self.smearing**2 * safe) / safe
        return torch.where(zero, torch.zeros_like(k_sq), value)


class RecordingKernel(KSpaceKernel):
    """Returns ones and remembers the argument it was called with."""

    def __init__(self):
        super().__init__()
        self.seen = torch.zeros(1)

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        self.seen = k_sq.detach().clone()
        return torch.ones_like(k_sq)


def _mesh_fractions(ns):
    return np.stack(np.meshgrid(*[np.arange(n) / n for n in ns], indexing="ij"), -1)


def _plane_waves(cell, ns, n_channels, seed):
    """A sum of cosines ``a cos(k·r + φ)`` with ``k = m·B`` resolved by the mesh.

    Returns the mesh values ``(C, nx, ny, nz)``, and per channel the list of
    ``(amplitude, |k|², phase-field)`` to build analytic results.
    """
    rng = np.random.default_rng(seed)
    frac = _mesh_fractions(ns)
    b = 2 * np.pi * np.linalg.inv(cell).T
    channels = []
    waves = []
    for _ in range(n_channels):
        total = np.full(ns, 0.3)  # a constant (k = 0) component
        parts = [(0.3, 0.0, np.zeros(ns))]
        for _ in range(4):
            # |m_d| < n_d / 2: no aliasing and no Nyquist frequency
            m = np.array([rng.integers(-((n - 1) // 2), (n - 1) // 2 + 1) for n in ns])
            amplitude = rng.normal()
            phase = 2 * np.pi * (frac @ m) + rng.uniform(0, 2 * np.pi)
            k = m @ b
            total = total + amplitude * np.cos(phase)
            parts.append((amplitude, float(k @ k), phase))
        channels.append(total)
        waves.append(parts)
    return np.stack(channels), waves


def _analytic(waves, ns, sigmas):
    out = []
    for parts, sigma in zip(waves, sigmas):
        total = np.zeros(ns)
        for amplitude, k_sq, phase in parts:
            total = total + amplitude * np.exp(-0.5 * sigma**2 * k_sq) * np.cos(phase)
        out.append(total)
    return np.stack(out)


# -- KSpaceKernel --------------------------------------------------------------------


def test_kernel_base_class_not_implemented():
    with pytest.raises(NotImplementedError, match="KSpaceKernel"):
        KSpaceKernel().kernel_from_k_sq(torch.ones(2, 2, 2))

    class Unfinished(KSpaceKernel):
        pass

    with pytest.raises(NotImplementedError, match="Unfinished"):
        Unfinished().kernel_from_k_sq(torch.ones(2, 2, 2))


# -- KSpaceFilter: construction and validation ---------------------------------------


@pytest.mark.parametrize("argument", ["fft_norm", "ifft_norm"])
@pytest.mark.parametrize("value", ["Ortho", "none", "", "backwards"], ids=repr)
def test_invalid_norm(argument, value):
    with pytest.raises(ValueError) as info:
        KSpaceFilter(
            torch.eye(3), torch.tensor([4, 4, 4]), OnesKernel(), **{argument: value}
        )
    message = str(info.value)
    assert argument in message
    assert repr(value)[1:-1] in message


def test_fft_norm_checked_first():
    with pytest.raises(ValueError) as info:
        KSpaceFilter(
            torch.eye(3),
            torch.tensor([4, 4, 4]),
            OnesKernel(),
            fft_norm="bad-one",
            ifft_norm="bad-two",
        )
    assert "bad-one" in str(info.value)
    assert "bad-two" not in str(info.value)


@pytest.mark.parametrize(
    "shape", [(3,), (2, 3), (3, 3, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_bad_cell_shape(shape):
    with pytest.raises(ValueError, match="cell"):
        KSpaceFilter(torch.ones(shape), torch.tensor([4, 4, 4]), OnesKernel())
    kfilter = KSpaceFilter(torch.eye(3), torch.tensor([4, 4, 4]), OnesKernel())
    with pytest.raises(ValueError, match="cell"):
        kfilter.update(cell=torch.ones(shape))


@pytest.mark.parametrize("ns", [[4, 4], [4, 4, 4, 4], [[4, 4, 4]]], ids=str)
def test_bad_ns_mesh_shape(ns):
    with pytest.raises(ValueError, match="ns_mesh"):
        KSpaceFilter(torch.eye(3), torch.tensor(ns), OnesKernel())
    kfilter = KSpaceFilter(torch.eye(3), torch.tensor([4, 4, 4]), OnesKernel())
    with pytest.raises(ValueError, match="ns_mesh"):
        kfilter.update(ns_mesh=torch.tensor(ns))


@pytest.mark.parametrize(
    "shape",
    [(1, 5, 6, 9), (1, 6, 6, 7), (1, 5, 5, 7), (5, 6, 7), (1, 1, 5, 6, 7)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_mismatched_mesh(shape):
    kfilter = KSpaceFilter(
        torch.eye(3, dtype=torch.float64), torch.tensor([5, 6, 7]), OnesKernel()
    )
    with pytest.raises(ValueError):
        kfilter.forward(torch.ones(shape, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_device_mismatch():
    kfilter = KSpaceFilter(
        torch.eye(3, dtype=torch.float64), torch.tensor([4, 4, 4]), OnesKernel()
    )
    with pytest.raises(ValueError):
        kfilter.forward(torch.ones(1, 4, 4, 4, dtype=torch.float64, device="cuda"))
    with pytest.raises(ValueError):
        KSpaceFilter(torch.eye(3), torch.tensor([4, 4, 4], device="cuda"), OnesKernel())


# -- KSpaceFilter: values ------------------------------------------------------------


def _norm_factor(fft_norm, ifft_norm, n_mesh):
    """Overall scale of ``irfftn(rfftn(x, fft_norm), ifft_norm)``."""
    forward = {"backward": 1.0, "forward": 1.0 / n_mesh, "ortho": n_mesh**-0.5}
    inverse = {"backward": 1.0 / n_mesh, "forward": 1.0, "ortho": n_mesh**-0.5}
    return forward[fft_norm] * inverse[ifft_norm] * n_mesh


@pytest.mark.parametrize("ns", [[5, 6, 7], [4, 4, 4]], ids=["567", "444"])
@pytest.mark.parametrize("ifft_norm", NORMS)
@pytest.mark.parametrize("fft_norm", NORMS)
def test_norms_with_unit_kernel(fft_norm, ifft_norm, ns):
    # identity iff both norms agree; backward/forward scales by N, forward/backward
    # by 1/N, and mixed ortho by sqrt(N)^{±1}
    n_mesh = int(np.prod(ns))
    mesh = torch.tensor(np.random.default_rng(0).normal(size=(2, *ns)))
    kfilter = KSpaceFilter(
        _t(SKEWED_CELL), torch.tensor(ns), OnesKernel(), fft_norm, ifft_norm
    )
    result = kfilter.forward(mesh)
    assert result.shape == mesh.shape
    assert result.dtype == mesh.dtype
    factor = _norm_factor(fft_norm, ifft_norm, n_mesh)
    if fft_norm == ifft_norm:
        assert factor == pytest.approx(1.0)
    torch.testing.assert_close(result, factor * mesh, rtol=1e-12, atol=1e-12)


def test_default_norms_are_ortho_identity():
    mesh = torch.tensor(np.random.default_rng(1).normal(size=(1, 3, 4, 5)))
    kfilter = KSpaceFilter(_t(SKEWED_CELL), torch.tensor([3, 4, 5]), OnesKernel())
    torch.testing.assert_close(kfilter.forward(mesh), mesh, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("fft_norm", "ifft_norm"),
    [("ortho", "ortho"), ("backward", "forward"), ("forward", "backward")],
    ids=["ortho-ortho", "backward-forward", "forward-backward"],
)
@pytest.mark.parametrize(
    ("cell", "ns"),
    [
        pytest.param(TRICLINIC_CELL, [8, 9, 10], id="triclinic-8x9x10"),
        pytest.param(SKEWED_CELL, [7, 6, 9], id="skewed-7x6x9"),
        pytest.param(np.diag([2.0, 3.0, 4.0]), [6, 8, 11], id="ortho-6x8x11"),
    ],
)
def test_gaussian_kernel_on_plane_waves(cell, ns, fft_norm, ifft_norm):
    sigma = 0.35
    mesh, waves = _plane_waves(cell, ns, n_channels=2, seed=sum(ns))
    kfilter = KSpaceFilter(
        _t(cell), torch.tensor(ns), GaussianKernel(_t(sigma)), fft_norm, ifft_norm
    )
    result = kfilter.forward(_t(mesh))
    factor = _norm_factor(fft_norm, ifft_norm, int(np.prod(ns)))
    expected = _analytic(waves, ns, [sigma, sigma])
    np.testing.assert_allclose(
        result.numpy(), factor * expected, rtol=1e-10, atol=1e-10 * factor
    )
    # the kernel really filters: the unscaled result differs from the input
    assert np.abs(expected - mesh).max() > 0.05


def test_per_channel_kernel():
    cell, ns = TRICLINIC_CELL, [8, 7, 6]
    sigmas = [0.2, 0.6, 1.1]
    mesh, waves = _plane_waves(cell, ns, n_channels=3, seed=4)
    kernel = GaussianKernel(_t(sigmas))
    assert kernel.kernel_from_k_sq(torch.ones(8, 7, 4)).shape == (3, 8, 7, 4)
    kfilter = KSpaceFilter(_t(cell), torch.tensor(ns), kernel)
    result = kfilter.forward(_t(mesh))
    assert result.shape == (3, *ns)
    np.testing.assert_allclose(
        result.numpy(), _analytic(waves, ns, sigmas), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize(
    ("cell", "ns"),
    [(TRICLINIC_CELL, [4, 5, 6]), (SKEWED_CELL, [3, 8, 7])],
    ids=["triclinic", "skewed"],
)
def test_kernel_receives_squared_norms(cell, ns):
    kernel = RecordingKernel()
    KSpaceFilter(_t(cell), torch.tensor(ns), kernel)
    k, _ = kvectors_mesh(cell, ns)
    assert kernel.seen.shape == (ns[0], ns[1], ns[2] // 2 + 1)
    np.testing.assert_allclose(kernel.seen.numpy(), np.sum(k * k, axis=-1), rtol=1e-12)


def test_update_without_arguments_refreshes_filter():
    cell, ns = SKEWED_CELL, [7, 6, 9]
    mesh, waves = _plane_waves(cell, ns, n_channels=1, seed=9)
    kernel = GaussianKernel(_t(0.3))
    kfilter = KSpaceFilter(_t(cell), torch.tensor(ns), kernel)
    before = kfilter.forward(_t(mesh))
    np.testing.assert_allclose(before.numpy(), _analytic(waves, ns, [0.3]), atol=1e-10)

    kernel.sigma = _t(0.7)
    kfilter.update()
    after = kfilter.forward(_t(mesh))
    np.testing.assert_allclose(after.numpy(), _analytic(waves, ns, [0.7]), atol=1e-10)
    assert (after - before).abs().max() > 0.05


def test_update_with_new_cell_and_mesh():
    old_cell, old_ns = np.eye(3) * 2.0, [4, 4, 4]
    cell, ns = TRICLINIC_CELL, [8, 9, 10]
    mesh, waves = _plane_waves(cell, ns, n_channels=1, seed=2)
    kfilter = KSpaceFilter(_t(old_cell), torch.tensor(old_ns), GaussianKernel(_t(0.4)))
    kfilter.update(_t(cell), torch.tensor(ns))
    result = kfilter.forward(_t(mesh))
    np.testing.assert_allclose(result.numpy(), _analytic(waves, ns, [0.4]), atol=1e-10)

    # changing only the cell keeps the mesh size
    kfilter.update(cell=_t(SKEWED_CELL))
    mesh, waves = _plane_waves(SKEWED_CELL, ns, n_channels=1, seed=3)
    result = kfilter.forward(_t(mesh))
    np.testing.assert_allclose(result.numpy(), _analytic(waves, ns, [0.4]), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_filter_follows_input_dtype(dtype):
    cell, ns = TRICLINIC_CELL, [6, 7, 8]
    mesh, waves = _plane_waves(cell, ns, n_channels=2, seed=1)
    kfilter = KSpaceFilter(
        _t(cell, dtype), torch.tensor(ns), GaussianKernel(_t(0.5, dtype))
    )
    result = kfilter.forward(_t(mesh, dtype))
    assert result.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(
        result.double().numpy(), _analytic(waves, ns, [0.5, 0.5]), atol=tol
    )


# -- P3MKSpaceFilter -----------------------------------------------------------------

# difference-operator coefficients c_{o,m} as printed in the spec (row 6 ends -1/465)
DIFF_COEFF = [
    [Fraction(1)],
    [Fraction(4, 3), Fraction(-1, 3)],
    [Fraction(3, 2), Fraction(-3, 5), Fraction(1, 10)],
    [Fraction(8, 5), Fraction(-4, 5), Fraction(8, 35), Fraction(-1, 35)],
    [
        Fraction(5, 3),
        Fraction(-20, 21),
        Fraction(5, 14),
        Fraction(-5, 63),
        Fraction(1, 126),
    ],
    [
        Fraction(12, 7),
        Fraction(-15, 14),
        Fraction(10, 21),
        Fraction(-1, 7),
        Fraction(2, 77),
        Fraction(-1, 465),
    ],
]


def _influence(cell, ns, n, mode, order):
    u2, k, kappa, h = p3m_u2(cell, ns, n)
    if mode == 0:
        numerator, denominator = np.ones_like(u2), u2
    else:
        d = np.zeros_like(kappa)
        for m, c in enumerate(DIFF_COEFF[order - 1], start=1):
            d = d + float(c) / m * np.sin(m * kappa)
        d = d / h
        numerator = np.sum(k * d, axis=-1) ** mode
        denominator = u2 * np.sum(d * d, axis=-1) ** (2 * mode)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def test_p3m_spec_reference_kfilter():
    kfilter = P3MKSpaceFilter(
        _t(TRICLINIC_CELL),
        torch.tensor([4, 4, 4]),
        3,
        CoulombKernel(0.8),
        cartesian_influence=True,
    )
    assert kfilter._kfilter.shape == (4, 4, 3)
    values = kfilter._kfilter
    assert float(values[1, 2, 1]) == pytest.approx(1.2881065192534302, rel=1e-13)
    assert float(values[0, 0, 1]) == pytest.approx(4.364820387300478, rel=1e-13)
    assert float(values[3, 1, 2]) == pytest.approx(0.6822020779955161, rel=1e-13)
    assert float(values[0, 0, 0]) == 0.0


@pytest.mark.parametrize("n", range(1, 6), ids=lambda n: f"n{n}")
@pytest.mark.parametrize(
    ("cell", "ns"),
    [
        (TRICLINIC_CELL, [4, 4, 4]),
        (SKEWED_CELL, [5, 6, 7]),
        (np.diag([2, 3, 4]), [6, 5, 8]),
    ],
    ids=["triclinic-444", "skewed-567", "ortho-658"],
)
def test_p3m_influence_is_inverse_u2(cell, ns, n):
    cell = np.asarray(cell, dtype=np.float64)
    # default: the assignment transform along the lattice vectors
    kfilter = P3MKSpaceFilter(_t(cell), torch.tensor(ns), n, OnesKernel())
    np.testing.assert_allclose(
        kfilter._kfilter.numpy(), 1.0 / p3m_u2_lattice(cell, ns, n), rtol=1e-12
    )
    # torch-pme 0.5's Cartesian form on request
    kfilter = P3MKSpaceFilter(
        _t(cell), torch.tensor(ns), n, OnesKernel(), cartesian_influence=True
    )
    expected = _influence(cell, ns, n, mode=0, order=2)
    assert kfilter._kfilter.shape == (ns[0], ns[1], ns[2] // 2 + 1)
    np.testing.assert_allclose(kfilter._kfilter.numpy(), expected, rtol=1e-12)
    # and the product with the kernel, on the full grid
    kfilter = P3MKSpaceFilter(
        _t(cell), torch.tensor(ns), n, CoulombKernel(0.8), cartesian_influence=True
    )
    k, _ = kvectors_mesh(cell, ns)
    k_sq = np.sum(k * k, axis=-1)
    coulomb = 4 * np.pi * np.exp(-0.32 * k_sq) / np.where(k_sq == 0, 1.0, k_sq)
    coulomb[0, 0, 0] = 0.0
    np.testing.assert_allclose(kfilter._kfilter.numpy(), expected * coulomb, rtol=1e-12)


def test_p3m_forward_deconvolves():
    # with a unit kernel, the filter divides the backward FFT by U² (no 1/N overall)
    cell, ns, n = SKEWED_CELL, [5, 6, 7], 4
    mesh = np.random.default_rng(5).normal(size=(2, *ns))
    kfilter = P3MKSpaceFilter(
        _t(cell), torch.tensor(ns), n, OnesKernel(), "backward", "forward"
    )
    spectrum = np.fft.rfftn(mesh, axes=(1, 2, 3)) / p3m_u2_lattice(cell, ns, n)
    expected = np.fft.irfftn(spectrum, s=ns, axes=(1, 2, 3)) * np.prod(ns)
    np.testing.assert_allclose(kfilter.forward(_t(mesh)).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("order", range(1, 7), ids=lambda o: f"order{o}")
@pytest.mark.parametrize("mode", range(4), ids=lambda m: f"mode{m}")
def test_p3m_all_modes_constructible(mode, order):
    # the original failed for mode != 0 (buffer registered after the first update)
    cell, ns, n = np.diag([3.0, 3.5, 4.0]), [5, 6, 8], 3
    kfilter = P3MKSpaceFilter(
        _t(cell), torch.tensor(ns), n, OnesKernel(), mode=mode, differential_order=order
    )
    assert kfilter.mode == mode
    assert kfilter.differential_order == order
    assert kfilter.interpolation_nodes == n
    values = kfilter._kfilter
    assert values.shape == (5, 6, 5)
    assert torch.isfinite(values).all()
    np.testing.assert_allclose(
        values.numpy(), _influence(cell, ns, n, mode, order), rtol=1e-10, atol=1e-14
    )
    mesh = torch.tensor(np.random.default_rng(0).normal(size=(1, *ns)))
    assert kfilter.forward(mesh).shape == (1, *ns)


@pytest.mark.parametrize("mode", [-1, 4, 7], ids=lambda m: f"mode{m}")
def test_p3m_invalid_mode(mode):
    with pytest.raises(ValueError, match="mode"):
        P3MKSpaceFilter(
            torch.eye(3), torch.tensor([4, 4, 4]), 3, OnesKernel(), mode=mode
        )


@pytest.mark.parametrize("order", [0, 7, -2], ids=lambda o: f"order{o}")
def test_p3m_invalid_differential_order(order):
    with pytest.raises(ValueError, match="differential_order"):
        P3MKSpaceFilter(
            torch.eye(3),
            torch.tensor([4, 4, 4]),
            3,
            OnesKernel(),
            differential_order=order,
        )


def test_p3m_mode_checked_before_differential_order():
    with pytest.raises(ValueError) as info:
        P3MKSpaceFilter(
            torch.eye(3),
            torch.tensor([4, 4, 4]),
            3,
            OnesKernel(),
            mode=9,
            differential_order=9,
        )
    assert "mode" in str(info.value)
    assert "differential_order" not in str(info.value)


def test_p3m_update_refreshes_filter():
    cell, ns, n = TRICLINIC_CELL, [5, 6, 7], 2
    kernel = GaussianKernel(_t(0.3))
    kfilter = P3MKSpaceFilter(
        _t(cell), torch.tensor(ns), n, kernel, cartesian_influence=True
    )
    k, _ = kvectors_mesh(cell, ns)
    k_sq = np.sum(k * k, axis=-1)
    influence = _influence(cell, ns, n, 0, 2)
    np.testing.assert_allclose(
        kfilter._kfilter.numpy(), influence * np.exp(-0.045 * k_sq), rtol=1e-12
    )
    kernel.sigma = _t(0.8)
    kfilter.update()
    np.testing.assert_allclose(
        kfilter._kfilter.numpy(), influence * np.exp(-0.32 * k_sq), rtol=1e-12
    )
    # a new cell updates both factors
    kfilter.update(cell=_t(SKEWED_CELL))
    k, _ = kvectors_mesh(SKEWED_CELL, ns)
    k_sq = np.sum(k * k, axis=-1)
    np.testing.assert_allclose(
        kfilter._kfilter.numpy(),
        _influence(SKEWED_CELL, ns, n, 0, 2) * np.exp(-0.32 * k_sq),
        rtol=1e-12,
    )
