"""Potentials against analytic limits, radial quadrature of their Fourier transforms,
finite differences, SciPy and TorchScript."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import torch

from torchpme.lib.splines import compute_second_derivatives, compute_spline_ft
from torchpme.potentials import (
    CombinedPotential,
    CoulombPotential,
    InversePowerLawPotential,
    Potential,
    PotentialDipole,
    SplinePotential,
)
from torchpme.potentials.coulomb import _pbc_correction

F64 = torch.float64
EXPONENTS = [1, 2, 3, 4, 5, 6]


def _scalar(function):
    """A float → float wrapper of a potential method for SciPy's quadrature."""
    return lambda r: function(torch.tensor([r], dtype=F64)).item()


def _radial_transform(lr, k, smearing, exponent):
    """4π/k ∫ r v(r) sin(kr) dr by quadrature; for 1/r the constant limit of r v(r)
    is split off with its Abel-regularised transform ∫ sin(kr) dr = 1/k."""
    if exponent == 1:
        integrand = lambda r: 1.0 - r * lr(r)  # noqa: E731  (erfc: fast decay)
        inner = scipy.integrate.quad(
            integrand, 0.0, 12 * smearing, weight="sin", wvar=k, epsabs=1e-14, limit=200
        )[0]
        return 4.0 * math.pi / k * (1.0 / k - inner)
    integrand = lambda r: r * lr(r)  # noqa: E731
    near = scipy.integrate.quad(
        integrand, 0.0, 10 * smearing, weight="sin", wvar=k, epsabs=1e-14, limit=200
    )[0]
    far = scipy.integrate.quad(
        integrand, 10 * smearing, np.inf, weight="sin", wvar=k, epsabs=1e-14, limlst=100
    )[0]
    return 4.0 * math.pi / k * (near + far)


# -- range separation --------------------------------------------------------------


@pytest.mark.parametrize("exponent", EXPONENTS, ids=lambda p: f"p={p}")
def test_short_plus_long_range_is_the_bare_potential(exponent):
    r = torch.linspace(0.05, 8.0, 200, dtype=F64)
    potentials = [InversePowerLawPotential(exponent, smearing=0.7, prefactor=1.3)]
    if exponent == 1:
        potentials.append(CoulombPotential(smearing=0.7, prefactor=1.3))
    for potential in potentials:
        total = potential.sr_from_dist(r) + potential.lr_from_dist(r)
        torch.testing.assert_close(total, 1.3 / r**exponent, rtol=1e-13, atol=0)
        torch.testing.assert_close(potential.from_dist(r), 1.3 / r**exponent)


# QAWF flags the slowly decaying tails of p = 2, 3 (r v ~ 1/r); the comparison at
# 1e-8 below is what checks the quadrature
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("smearing", [0.5, 1.0, 1.7], ids=lambda s: f"sigma={s}")
@pytest.mark.parametrize("exponent", EXPONENTS, ids=lambda p: f"p={p}")
def test_kernel_is_the_fourier_transform_of_the_long_range_part(exponent, smearing):
    potential = InversePowerLawPotential(exponent, smearing=smearing)
    lr = _scalar(potential.lr_from_dist)
    k = np.array([0.3, 1.0, 2.5])
    kernel = potential.lr_from_k_sq(torch.tensor(k**2)).numpy()
    expected = [_radial_transform(lr, kk, smearing, exponent) for kk in k]
    np.testing.assert_allclose(kernel, expected, rtol=1e-8)


@pytest.mark.parametrize("exponent", [4, 5, 6], ids=lambda p: f"p={p}")
def test_kernel_at_zero_is_the_integral_of_the_long_range_part(exponent):
    potential = InversePowerLawPotential(exponent, smearing=0.9)
    lr = _scalar(potential.lr_from_dist)
    integral = scipy.integrate.quad(
        lambda r: r * r * lr(r), 0, np.inf, epsabs=0, epsrel=1e-12
    )[0]
    kernel = potential.lr_from_k_sq(torch.tensor([0.0, 1e-14], dtype=F64))
    assert kernel[0].item() == pytest.approx(4 * math.pi * integral, rel=1e-10)
    # continuous at k = 0 (for p = 4 the approach is only like k: Γ(−½, x) ~ √x)
    assert kernel[1].item() == pytest.approx(kernel[0].item(), rel=1e-5)


def test_kernel_at_zero_reference_number():
    potential = InversePowerLawPotential(5, smearing=1.0)
    value = potential.lr_from_k_sq(torch.tensor([0.0], dtype=F64))
    assert value.item() == pytest.approx(2 * math.pi / 3, rel=1e-14)


@pytest.mark.parametrize("exponent", [1, 2, 3], ids=lambda p: f"p={p}")
def test_kernel_is_zero_at_k_zero_for_low_exponents(exponent):
    potential = InversePowerLawPotential(exponent, smearing=0.9)
    k_sq = torch.tensor([0.0, 0.5], dtype=F64, requires_grad=True)
    kernel = potential.lr_from_k_sq(k_sq)
    assert kernel[0].item() == 0.0
    (gradient,) = torch.autograd.grad(kernel.sum(), k_sq)
    assert torch.isfinite(gradient).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("needs_grad", [False, True])
def test_coulomb_kernel_formula_with_and_without_gradients(dtype, needs_grad):
    """``4π e^{−σ²k²/2}/k²``, and 0 at ``k = 0``, on both code paths (the one
    without gradients works in place and divides by zero before masking)."""
    sigma = 0.8
    values = [0.0, 1e-3, 0.1, 1.0, 7.0]
    k_sq = torch.tensor(values, dtype=dtype, requires_grad=needs_grad)
    kernel = CoulombPotential(smearing=sigma).to(dtype).lr_from_k_sq(k_sq)
    expected = [0.0] + [
        4 * math.pi * math.exp(-(sigma**2) * k / 2) / k for k in values[1:]
    ]
    rtol = 1e-14 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(kernel.detach().double().numpy(), expected, rtol=rtol)
    assert kernel.requires_grad == needs_grad


def test_coulomb_kernel_equals_inverse_power_law_one():
    k_sq = torch.tensor([0.0, 0.1, 1.0, 7.0], dtype=F64)
    coulomb = CoulombPotential(smearing=0.8)
    power = InversePowerLawPotential(1, smearing=0.8)
    torch.testing.assert_close(coulomb.lr_from_k_sq(k_sq), power.lr_from_k_sq(k_sq))
    torch.testing.assert_close(
        coulomb.kernel_from_k_sq(k_sq), coulomb.lr_from_k_sq(k_sq)
    )
    torch.testing.assert_close(coulomb.self_contribution(), power.self_contribution())
    torch.testing.assert_close(
        coulomb.background_correction(), power.background_correction()
    )


@pytest.mark.parametrize("exponent", EXPONENTS, ids=lambda p: f"p={p}")
def test_self_contribution_is_the_long_range_limit_at_zero(exponent):
    potential = InversePowerLawPotential(exponent, smearing=0.6, prefactor=2.0)
    near_zero = potential.lr_from_dist(torch.tensor([1e-7, 0.0], dtype=F64))
    # independent: P(s, x)/x^s → 1/Γ(s + 1) as x → 0
    expected = (
        2.0 / scipy.special.gamma(exponent / 2 + 1) / (2 * 0.6**2) ** (exponent / 2)
    )
    assert potential.self_contribution().item() == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(near_zero.numpy(), expected, rtol=1e-12)


def test_coulomb_self_contribution_and_zero_distance_quirk():
    potential = CoulombPotential(smearing=0.6, prefactor=2.0)
    expected = 2.0 * math.sqrt(2 / math.pi) / 0.6
    assert potential.self_contribution().item() == pytest.approx(expected, rel=1e-14)
    values = potential.lr_from_dist(torch.tensor([1e-7, 0.0], dtype=F64))
    assert values[0].item() == pytest.approx(expected, rel=1e-12)
    assert values[1].item() == 0.0  # torch-pme 0.5 clamps r, giving 0 at r = 0


@pytest.mark.parametrize(
    "potential",
    [
        CoulombPotential(smearing=0.8, prefactor=1.5),
        InversePowerLawPotential(1, smearing=0.8, prefactor=1.5),
        InversePowerLawPotential(2, smearing=0.8, prefactor=1.5),
    ],
    ids=["coulomb", "p=1", "p=2"],
)
def test_background_correction_is_half_the_short_range_integral(potential):
    # ½ ∫ v_sr d³r = ½ lim_{k→0} (v̂ − v̂_lr)(k); v_sr decays like a Gaussian
    sr = _scalar(potential.sr_from_dist)
    integral = scipy.integrate.quad(
        lambda r: r * r * sr(r), 0, 15 * 0.8, epsabs=0, epsrel=1e-12, limit=200
    )[0]
    value = potential.background_correction().item()
    assert value == pytest.approx(0.5 * 4 * math.pi * integral, rel=1e-9)


@pytest.mark.parametrize("exponent", [3, 4, 5, 6], ids=lambda p: f"p={p}")
def test_background_correction_vanishes_for_high_exponents(exponent):
    value = InversePowerLawPotential(exponent, smearing=0.8).background_correction()
    assert value.item() == 0.0
    assert value.dtype == F64 and value.shape == ()


# -- exclusion ---------------------------------------------------------------------


@pytest.mark.parametrize("degree", [1, 2, 3], ids=lambda d: f"d={d}")
def test_exclusion_cutoff_is_smooth_and_vanishes(degree):
    potential = CoulombPotential(
        smearing=0.5, exclusion_radius=2.0, exclusion_degree=degree
    )
    r = torch.tensor([0.0, 1.0, 2.0 - 1e-7, 2.0, 2.5], dtype=F64, requires_grad=True)
    cutoff = potential.f_cutoff(r)
    (slope,) = torch.autograd.grad(cutoff.sum(), r)
    expected_mid = 1.0 - 0.5**degree  # u = 1/2: (1 − cos(π/2))/2 = 1/2
    assert cutoff.detach().tolist()[:2] == pytest.approx([1.0, expected_mid])
    assert cutoff[2].item() == pytest.approx(0.0, abs=1e-12)
    assert cutoff[3].item() == 0.0 and cutoff[4].item() == 0.0
    assert abs(slope[2].item()) < 1e-5 and abs(slope[3].item()) < 1e-12
    # the switched potential: v_sr + v_lr = v_lr (1 − f_cut)
    d = torch.linspace(0.1, 3.0, 30, dtype=F64)
    total = potential.sr_from_dist(d) + potential.lr_from_dist(d)
    torch.testing.assert_close(
        total, potential.lr_from_dist(d) * (1 - potential.f_cutoff(d))
    )


def test_exclusion_cutoff_degree_one_formula_and_mask():
    potential = InversePowerLawPotential(2, exclusion_radius=3.0)
    r = torch.linspace(0.0, 3.0, 13, dtype=F64)
    torch.testing.assert_close(
        potential.f_cutoff(r), (1 + torch.cos(math.pi * r / 3.0)) / 2
    )
    mask = torch.arange(13) % 2 == 0
    torch.testing.assert_close(
        potential.f_cutoff(r, mask), potential.f_cutoff(r) * mask
    )


# -- slab correction ---------------------------------------------------------------


def _slab_system():
    positions = torch.tensor(
        [[0.1, 0.2, 0.3], [2.6, 2.4, 2.1], [1.2, 3.9, 0.7], [4.1, 0.8, 3.3]], dtype=F64
    )
    charges = torch.tensor(
        [[1.0, 0.5], [-1.0, 0.2], [0.7, -0.3], [-0.4, 0.1]], dtype=F64
    )
    cell = torch.tensor([[5.0, 0, 0], [0.5, 4.5, 0], [0.3, 0.2, 4.0]], dtype=F64)
    return positions, charges, cell


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_correction_energy(axis):
    positions, charges, cell = _slab_system()
    periodic = torch.ones(3, dtype=torch.bool)
    periodic[axis] = False
    correction = _pbc_correction(periodic, positions, cell, charges)
    z = positions[:, axis : axis + 1]
    total, moment = charges.sum(0), (charges * z).sum(0)
    second = (charges * z * z).sum(0)
    volume = torch.linalg.det(cell).abs()
    length_sq = (cell[axis] ** 2).sum()
    expected = (2 * math.pi / volume) * (
        moment**2 - total * second - total**2 * length_sq / 12
    )
    torch.testing.assert_close(0.5 * (charges * correction).sum(0), expected)


@pytest.mark.parametrize(
    "periodic",
    [None, [True, True, True], [True, False, False], [False, False, False]],
    ids=["none", "3d", "1d", "0d"],
)
def test_slab_correction_is_zero_unless_two_dimensional(periodic):
    positions, charges, cell = _slab_system()
    if periodic is not None:
        periodic = torch.tensor(periodic)
    assert torch.all(_pbc_correction(periodic, positions, cell, charges) == 0)


def test_slab_correction_prefactor_vmap_and_which_potentials():
    positions, charges, cell = _slab_system()
    periodic = torch.tensor([[True, True, False], [True, True, True]])
    batched = torch.vmap(_pbc_correction)(
        periodic,
        positions.expand(2, 4, 3),
        cell.expand(2, 3, 3),
        charges.expand(2, 4, 2),
    )
    torch.testing.assert_close(
        batched[0], _pbc_correction(periodic[0], positions, cell, charges)
    )
    assert torch.all(batched[1] == 0)
    expected = 2.0 * batched[0]
    for potential in [
        CoulombPotential(smearing=1.0, prefactor=2.0),
        InversePowerLawPotential(1, smearing=1.0, prefactor=2.0),
    ]:
        value = potential.pbc_correction(periodic[0], positions, cell, charges)
        torch.testing.assert_close(value, expected)
    for potential in [
        InversePowerLawPotential(2, smearing=1.0),
        CombinedPotential([CoulombPotential(smearing=1.0)], smearing=1.0),
    ]:
        value = potential.pbc_correction(periodic[0], positions, cell, charges)
        assert torch.all(value == 0)


# -- dipoles -----------------------------------------------------------------------


def _minus_hessian(phi, vector, step=1e-4):
    """−∂_a∂_b φ(r) by central finite differences (NumPy, float64)."""
    result = np.zeros((3, 3))
    eye = np.eye(3) * step
    for a in range(3):
        for b in range(3):
            result[a, b] = -(
                phi(vector + eye[a] + eye[b])
                - phi(vector + eye[a] - eye[b])
                - phi(vector - eye[a] + eye[b])
                + phi(vector - eye[a] - eye[b])
            ) / (4 * step * step)
    return result


VECTORS = np.array([[1.0, 0.5, -0.3], [0.2, -1.4, 0.9], [-2.0, 0.7, 1.1]])


def test_dipole_tensors_are_minus_hessians_of_coulomb():
    smearing = 0.8
    potential = PotentialDipole(smearing=smearing, prefactor=1.7)
    vectors = torch.tensor(VECTORS)
    bare = potential.from_dist(vectors).numpy()
    lr = potential.lr_from_dist(vectors).numpy()
    sr = potential.sr_from_dist(vectors).numpy()

    def coulomb(v):
        return 1.0 / np.linalg.norm(v)

    def smeared(v):
        r = np.linalg.norm(v)
        return scipy.special.erf(r / (math.sqrt(2) * smearing)) / r

    for i, vector in enumerate(VECTORS):
        np.testing.assert_allclose(
            bare[i], 1.7 * _minus_hessian(coulomb, vector), atol=1e-7
        )
        np.testing.assert_allclose(
            lr[i], 1.7 * _minus_hessian(smeared, vector), atol=1e-7
        )
    np.testing.assert_allclose(sr, bare - lr, rtol=1e-13)


def test_dipole_long_range_is_the_hessian_of_the_monopole_long_range():
    coulomb = CoulombPotential(smearing=0.8)
    potential = PotentialDipole(smearing=0.8)
    for vector in torch.tensor(VECTORS):
        hessian = torch.autograd.functional.hessian(
            lambda v: coulomb.lr_from_dist(torch.linalg.norm(v).reshape(1))[0], vector
        )
        torch.testing.assert_close(potential.lr_from_dist(vector[None])[0], -hessian)


def test_dipole_scalar_terms_and_exclusion():
    potential = PotentialDipole(smearing=0.8, exclusion_radius=2.0, prefactor=2.0)
    tiny = potential.lr_from_dist(torch.tensor([[1e-4, 0.0, 0.0]], dtype=F64))[0]
    torch.testing.assert_close(
        tiny, potential.self_contribution() * torch.eye(3, dtype=F64), rtol=1e-6, atol=0
    )
    k_sq = torch.tensor([0.0, 0.3, 2.0], dtype=F64)
    torch.testing.assert_close(
        potential.lr_from_k_sq(k_sq),
        CoulombPotential(smearing=0.8, prefactor=2.0).lr_from_k_sq(k_sq),
    )
    volume = torch.tensor(50.0, dtype=F64)
    assert potential.background_correction(volume).item() == 0.0
    vacuum = PotentialDipole(smearing=0.8, epsilon=1.0, prefactor=2.0)
    assert vacuum.background_correction(volume).item() == pytest.approx(
        2.0 * 4 * math.pi / 3 / 50.0
    )
    vectors = torch.tensor(VECTORS)
    cutoff = potential.f_cutoff(vectors)
    assert cutoff.shape == (3, 1)
    reference = CoulombPotential(exclusion_radius=2.0).f_cutoff(vectors.norm(dim=1))
    torch.testing.assert_close(cutoff[:, 0], reference)
    torch.testing.assert_close(
        potential.sr_from_dist(vectors),
        -potential.lr_from_dist(vectors) * cutoff[..., None],
    )


# -- spline and combined potentials ------------------------------------------------


def test_spline_potential_reproduces_the_coulomb_kernel():
    smearing = 1.0
    r = torch.linspace(0.01, 30.0, 1500, dtype=F64)
    coulomb = CoulombPotential(smearing=smearing)
    spline = SplinePotential(r, coulomb.lr_from_dist(r), smearing=smearing)
    d = torch.tensor([0.3, 1.7, 5.0, 12.0], dtype=F64)
    torch.testing.assert_close(
        spline.lr_from_dist(d), coulomb.lr_from_dist(d), rtol=1e-7, atol=0
    )
    k_sq = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    torch.testing.assert_close(
        spline.lr_from_k_sq(k_sq), coulomb.lr_from_k_sq(k_sq), rtol=1e-4, atol=0
    )


def test_spline_potential_kernel_and_quirks():
    r = torch.linspace(0.5, 6.0, 12, dtype=F64)
    y = torch.exp(-r) * torch.cos(r)
    potential = SplinePotential(r, y, prefactor=2.0)
    yhat = compute_spline_ft(r, r, y, compute_second_derivatives(r, y))
    torch.testing.assert_close(potential.lr_from_k_sq(r**2), 2.0 * yhat)
    d = torch.tensor([0.7, 3.3], dtype=F64)
    torch.testing.assert_close(potential.from_dist(d), 2.0 * potential.lr_from_dist(d))
    assert torch.all(potential.sr_from_dist(d) == 0)
    assert potential.self_contribution().shape == (1,)
    assert potential.background_correction().tolist() == [0.0]
    assert potential.background_correction().dtype == torch.float32
    mask = torch.tensor([True, False])
    assert potential.lr_from_dist(d, mask)[1].item() == 0.0
    given = SplinePotential(r, y, y_at_zero=1.0, reciprocal=True)
    assert given.self_contribution().shape == ()
    assert given.self_contribution().item() == 1.0
    moved = potential.to(torch.float32)
    assert all(b.dtype == torch.float32 for b in moved.buffers())


def test_combined_potential_sums_weighted_terms():
    r = torch.linspace(0.5, 4.0, 9, dtype=F64)
    k_sq = torch.tensor([0.0, 0.4, 3.0], dtype=F64)
    parts = [CoulombPotential(smearing=1.0), InversePowerLawPotential(4, smearing=1.0)]
    weights = torch.tensor([0.3, -1.2], dtype=F64)
    combined = CombinedPotential(parts, initial_weights=weights, smearing=1.0)
    for method, arg in [
        ("from_dist", (r,)),
        ("sr_from_dist", (r,)),
        ("lr_from_dist", (r,)),
        ("lr_from_k_sq", (k_sq,)),
        ("self_contribution", ()),
        ("background_correction", ()),
    ]:
        expected = sum(w * getattr(p, method)(*arg) for w, p in zip(weights, parts))
        torch.testing.assert_close(getattr(combined, method)(*arg), expected)
    # learnable weights receive gradients
    assert isinstance(combined.weights, torch.nn.Parameter)
    combined.lr_from_dist(r).sum().backward()
    assert combined.weights.grad is not None
    fixed = CombinedPotential(parts, learnable_weights=False, smearing=1.0)
    assert "weights" in dict(fixed.named_buffers())


def test_combined_potential_broadcasts_terms_and_keeps_dtypes():
    r = torch.linspace(0.5, 6.0, 12, dtype=F64)
    spline = SplinePotential(r, torch.exp(-r), smearing=1.0)
    combined = CombinedPotential([spline, CoulombPotential(smearing=1.0)], smearing=1.0)
    assert combined.weights.dtype == torch.float32  # default weights, as in 0.5
    value = combined.self_contribution()
    assert value.shape == (1,) and value.dtype == F64
    expected = (
        spline.self_contribution() + CoulombPotential(smearing=1.0).self_contribution()
    )
    torch.testing.assert_close(value, expected)
    assert combined.lr_from_k_sq(r**2).dtype == F64
    assert combined.lr_from_dist(r.float()).dtype == torch.float32


# -- dtypes and TorchScript --------------------------------------------------------


def _potentials():
    r = torch.linspace(0.5, 6.0, 20, dtype=F64)
    return {
        "coulomb": CoulombPotential(smearing=0.9, prefactor=1.3),
        "coulomb-direct": CoulombPotential(),
        "coulomb-exclusion": CoulombPotential(
            smearing=0.9, exclusion_radius=1.5, exclusion_degree=2
        ),
        **{f"p={p}": InversePowerLawPotential(p, smearing=0.9) for p in EXPONENTS},
        "p=3-exclusion": InversePowerLawPotential(
            3, smearing=0.9, exclusion_radius=2.0
        ),
        "spline": SplinePotential(r, torch.exp(-r), smearing=1.0),
        "spline-reciprocal": SplinePotential(r, 1.0 / r, reciprocal=True, smearing=1.0),
        "combined": CombinedPotential(
            [CoulombPotential(smearing=1.0), InversePowerLawPotential(6, smearing=1.0)],
            smearing=1.0,
        ),
        "combined-spline": CombinedPotential(
            [
                SplinePotential(r, torch.exp(-r), smearing=1.0),
                CoulombPotential(smearing=1.0),
            ],
            smearing=1.0,
        ),
    }


POTENTIALS = _potentials()
DIST = torch.tensor([0.3, 0.9, 1.6, 2.4, 5.0], dtype=F64)
K_SQ = torch.tensor([0.0, 0.2, 1.0, 6.0], dtype=F64)


def _calls(potential):
    yield "from_dist", (DIST,)
    yield "from_dist", (DIST, DIST > 1.0)
    if potential.exclusion_radius is not None:
        yield "f_cutoff", (DIST,)
    if potential.smearing is not None:
        yield "sr_from_dist", (DIST, DIST > 1.0)
        yield "lr_from_dist", (DIST,)
        yield "lr_from_k_sq", (K_SQ,)
        yield "kernel_from_k_sq", (K_SQ,)
        yield "self_contribution", ()
        yield "background_correction", ()


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_torchscript_gives_the_eager_results(name):
    potential = POTENTIALS[name]
    scripted = torch.jit.script(potential)
    for method, args in _calls(potential):
        eager = getattr(potential, method)(*args)
        torch.testing.assert_close(
            getattr(scripted, method)(*args), eager, rtol=0, atol=0
        )
    positions, charges, cell = _slab_system()
    periodic = torch.tensor([True, False, True])
    torch.testing.assert_close(
        scripted.pbc_correction(periodic, positions, cell, charges),
        potential.pbc_correction(periodic, positions, cell, charges),
    )
    if potential.smearing is None:
        with pytest.raises(torch.jit.Error, match="smearing"):
            scripted.lr_from_dist(DIST)


def test_torchscript_dipole():
    vectors = torch.tensor(VECTORS)
    for potential in [
        PotentialDipole(),
        PotentialDipole(smearing=0.8, epsilon=2.0),
        PotentialDipole(smearing=0.8, exclusion_radius=2.0),
    ]:
        scripted = torch.jit.script(potential)
        calls = [("from_dist", (vectors,))]
        if potential.smearing is not None:
            calls += [
                ("lr_from_dist", (vectors,)),
                ("sr_from_dist", (vectors,)),
                ("lr_from_k_sq", (K_SQ,)),
                ("self_contribution", ()),
                ("background_correction", (torch.tensor(30.0, dtype=F64),)),
            ]
        if potential.exclusion_radius is not None:
            calls.append(("f_cutoff", (vectors,)))
        for method, args in calls:
            torch.testing.assert_close(
                getattr(scripted, method)(*args), getattr(potential, method)(*args)
            )


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_float32_inputs_give_float32_results(name):
    potential = POTENTIALS[name]
    for method, args in _calls(potential):
        args32 = tuple(a.float() if a.is_floating_point() else a for a in args)
        value = getattr(potential, method)(*args32)
        reference = getattr(potential, method)(*args)
        if args:
            assert value.dtype == torch.float32, method
        torch.testing.assert_close(
            value.double(), reference.double(), rtol=2e-5, atol=1e-6
        )


def test_dipole_float32():
    potential = PotentialDipole(smearing=0.8, exclusion_radius=2.0)
    vectors = torch.tensor(VECTORS)
    for method in ["from_dist", "lr_from_dist", "sr_from_dist", "f_cutoff"]:
        value = getattr(potential, method)(vectors.float())
        assert value.dtype == torch.float32
        torch.testing.assert_close(
            value.double(), getattr(potential, method)(vectors), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("exponent", EXPONENTS, ids=lambda p: f"p={p}")
def test_gradients_of_inverse_power_law(exponent):
    potential = InversePowerLawPotential(exponent, smearing=0.8)
    r = torch.tensor([0.4, 1.1, 2.7], dtype=F64, requires_grad=True)
    k_sq = torch.tensor([0.3, 1.5, 4.0], dtype=F64, requires_grad=True)
    for function, x in [
        (potential.lr_from_dist, r),
        (potential.sr_from_dist, r),
        (potential.lr_from_k_sq, k_sq),
    ]:
        assert torch.autograd.gradcheck(function, (x,))
        assert torch.autograd.gradgradcheck(function, (x,))


def test_gradients_of_coulomb_and_dipole():
    coulomb = CoulombPotential(smearing=0.8, exclusion_radius=1.5, exclusion_degree=2)
    r = torch.tensor([0.4, 1.1, 2.7], dtype=F64, requires_grad=True)
    for function in [coulomb.lr_from_dist, coulomb.sr_from_dist, coulomb.lr_from_k_sq]:
        assert torch.autograd.gradcheck(function, (r,))
        assert torch.autograd.gradgradcheck(function, (r,))
    dipole = PotentialDipole(smearing=0.8)
    vectors = torch.tensor(VECTORS, requires_grad=True)
    assert torch.autograd.gradcheck(dipole.sr_from_dist, (vectors,))


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: CoulombPotential(smearing=0.0), ValueError, "smearing"),
        (lambda: CoulombPotential(smearing=-1.0), ValueError, "smearing"),
        (lambda: CoulombPotential(smearing=float("inf")), ValueError, "smearing"),
        (
            lambda: CoulombPotential(exclusion_radius=0.0),
            ValueError,
            "exclusion_radius",
        ),
        (lambda: CoulombPotential(exclusion_degree=0), ValueError, "exclusion_degree"),
        (lambda: CoulombPotential(exclusion_degree=1.5), TypeError, "exclusion_degree"),
        (lambda: InversePowerLawPotential(0), ValueError, "exponent"),
        (lambda: InversePowerLawPotential(7), ValueError, "exponent"),
        (lambda: InversePowerLawPotential(2.5), ValueError, "exponent"),
        (lambda: PotentialDipole(smearing=-0.1), ValueError, "smearing"),
        (
            lambda: PotentialDipole(exclusion_radius=-2.0),
            ValueError,
            "exclusion_radius",
        ),
        (lambda: PotentialDipole(epsilon=-1.0), ValueError, "epsilon"),
        (
            lambda: SplinePotential(torch.linspace(0, 1, 5), torch.ones(4)),
            ValueError,
            "y_grid",
        ),
        (
            lambda: SplinePotential(
                torch.linspace(0, 1, 5), torch.ones(5), reciprocal=True
            ),
            ValueError,
            "r_grid",
        ),
        (
            lambda: CombinedPotential(
                [CoulombPotential(smearing=1.0), CoulombPotential()], smearing=1.0
            ),
            ValueError,
            "potentials",
        ),
        (
            lambda: CombinedPotential([CoulombPotential(smearing=1.0)]),
            ValueError,
            "smearing",
        ),
        (
            lambda: CombinedPotential([CoulombPotential()], smearing=1.0),
            ValueError,
            "smearing",
        ),
        (
            lambda: CombinedPotential(
                [CoulombPotential()], initial_weights=torch.ones(2)
            ),
            ValueError,
            "initial_weights",
        ),
        (lambda: CombinedPotential([]), ValueError, "potentials"),
    ],
)
def test_bad_arguments_are_named(build, error, argument):
    with pytest.raises(error, match=f"`{argument}` must be"):
        build()


def test_methods_needing_what_is_missing():
    direct = CoulombPotential()
    for method, args in [
        ("lr_from_dist", (DIST,)),
        ("sr_from_dist", (DIST,)),
        ("lr_from_k_sq", (K_SQ,)),
        ("self_contribution", ()),
        ("background_correction", ()),
    ]:
        with pytest.raises(ValueError, match="`smearing` must be set"):
            getattr(direct, method)(*args)
    with pytest.raises(ValueError, match="`exclusion_radius` must be set"):
        direct.f_cutoff(DIST)
    with pytest.raises(ValueError, match="`smearing` must be set"):
        PotentialDipole().lr_from_dist(torch.tensor(VECTORS))


def test_base_class_names_what_is_missing_and_user_subclasses_script():
    class Direct(Potential):
        @torch.jit.export
        def from_dist(self, dist: torch.Tensor, pair_mask: torch.Tensor | None = None):
            return 1.0 / dist**2

    potential = Direct(smearing=1.0)
    with pytest.raises(NotImplementedError, match=r"`lr_from_dist` .* Direct"):
        potential.lr_from_dist(DIST)
    with pytest.raises(NotImplementedError, match=r"`self_contribution` .* Direct"):
        potential.self_contribution()
    scripted = torch.jit.script(Direct())
    torch.testing.assert_close(scripted.from_dist(DIST), 1.0 / DIST**2)
