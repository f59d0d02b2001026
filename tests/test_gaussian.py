"""Gaussian charges of per-atom widths (torchpme.gaussian).

The references split the Gaussian interaction the other way: a NumPy Ewald sum with
the per-atom factors ``e^{−k²σ_i²/2}`` in reciprocal space and erfc-screened
differences in real space (written here from the definition), and the erf sum over
all pairs for clusters. Forces and the gradients with respect to charges and widths
are checked against central differences of the references.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import erf, erfc

from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    PMECalculator,
)
from torchpme.gaussian import gaussian_potentials
from torchpme.neighbors import compute_neighbors

DTYPE = torch.float64
CELL = np.array([[6.0, 0.0, 0.0], [0.7, 5.6, 0.0], [-0.4, 0.5, 6.2]])


def _system(n=8, seed=0, charged=False):
    rng = np.random.default_rng(seed)
    positions = rng.random((n, 3)) @ CELL
    charges = rng.normal(size=n)
    if not charged:
        charges -= charges.mean()
    widths = rng.uniform(0.3, 0.8, size=n)
    return positions, charges, widths


def _ewald_energy(positions, charges, widths, cell, self_energy=False, s=1.0):
    """Ewald sum of Gaussian charges: reciprocal factors per atom."""
    volume = abs(np.linalg.det(cell))
    gamma = np.sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)
    outer = np.sqrt(2.0 * (gamma**2 + s**2))
    inner = np.sqrt(2.0) * gamma
    r_cut = 7.0 * outer.max()
    heights = volume / np.linalg.norm(
        np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1
    )
    reach = [math.ceil(r_cut / h) + 1 for h in heights]
    energy = 0.0
    for shift in itertools.product(*[range(-r, r + 1) for r in reach]):
        vectors = positions[None, :] + np.array(shift) @ cell - positions[:, None]
        r = np.linalg.norm(vectors, axis=-1)
        if not any(shift):
            np.fill_diagonal(r, np.inf)
        terms = (erfc(r / outer) - erfc(r / inner)) / r
        energy += 0.5 * charges @ terms @ charges
    reciprocal = 2.0 * math.pi * np.linalg.inv(cell).T
    k_cut = math.sqrt(2.0 * 40.0) / s
    k_reach = [math.ceil(k_cut * np.linalg.norm(a) / (2 * math.pi)) + 1 for a in cell]
    for m in itertools.product(*[range(-r, r + 1) for r in k_reach]):
        if not any(m):
            continue
        k = np.array(m, float) @ reciprocal
        k2 = k @ k
        if k2 > k_cut**2:
            continue
        factors = charges * np.exp(-0.5 * k2 * widths**2)
        structure = factors @ np.exp(1j * positions @ k)
        energy += (
            2.0
            * math.pi
            / volume
            * math.exp(-0.5 * k2 * s**2)
            / k2
            * abs(structure) ** 2
        )
    energy -= 0.5 * np.sum(
        charges**2 * math.sqrt(2.0 / math.pi) / np.sqrt(s**2 + 2 * widths**2)
    )
    energy -= math.pi * s**2 * charges.sum() ** 2 / volume
    if self_energy:
        energy += np.sum(charges**2 / (2.0 * math.sqrt(math.pi) * widths))
    return energy


def _cluster_energy(positions, charges, widths, self_energy=False):
    """½ Σ_{i≠j} q_i q_j erf(r/√2γ_ij)/r over all pairs."""
    r = np.linalg.norm(positions[None] - positions[:, None], axis=-1)
    np.fill_diagonal(r, np.inf)
    gamma = np.sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)
    energy = 0.5 * charges @ (erf(r / (np.sqrt(2) * gamma)) / r) @ charges
    if self_energy:
        energy += np.sum(charges**2 / (2.0 * math.sqrt(math.pi) * widths))
    return energy


def _ours(calculator, positions, charges, widths, cell, cutoff, self_energy, periodic):
    p, q, w, c = (
        torch.tensor(x, dtype=DTYPE) for x in (positions, charges, widths, cell)
    )
    p.requires_grad_(True)
    q = q.reshape(-1, 1).requires_grad_(True)
    w.requires_grad_(True)
    is_cluster = periodic is not None and not bool(periodic.any())
    indices, _, shifts = compute_neighbors(
        p.detach(), None if is_cluster else c, cutoff, return_shifts=True
    )
    vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
    distances = torch.linalg.norm(vectors, dim=1)
    potential = gaussian_potentials(
        calculator, q, w, c, p, indices, distances, periodic, self_energy
    )
    energy = (q * potential).sum()
    forces, dq, dw = torch.autograd.grad(energy, (p, q, w))
    return float(energy.detach()), -forces.numpy(), dq.numpy()[:, 0], dw.numpy()


def _slope(function, x, gradient, h=1e-5, seed=1):
    """``(finite-difference slope, ∇·v)`` of ``function`` at ``x`` along a random
    direction ``v``: one central difference checks every component at once."""
    direction = np.random.default_rng(seed).normal(size=x.shape)
    slope = (function(x + h * direction) - function(x - h * direction)) / (2 * h)
    return slope, float(np.sum(gradient * direction))


METHODS = {
    "ewald": (lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.35), 1e-9),
    "pme": (lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.25, 7), 1e-6),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("charged", [False, True], ids=["neutral", "charged"])
@pytest.mark.parametrize("self_energy", [False, True], ids=["", "self"])
def test_periodic_energy_equals_reciprocal_factors(method, charged, self_energy):
    make, tolerance = METHODS[method]
    positions, charges, widths = _system(charged=charged)
    energy, *_ = _ours(make(), positions, charges, widths, CELL, 9.0, self_energy, None)
    expected = _ewald_energy(positions, charges, widths, CELL, self_energy)
    assert abs(energy - expected) < tolerance * np.sum(np.abs(charges)) ** 2


def test_periodic_gradients_equal_finite_differences():
    positions, charges, widths = _system(charged=True)
    calculator = METHODS["ewald"][0]()
    _, forces, dq, dw = _ours(
        calculator, positions, charges, widths, CELL, 9.0, True, None
    )

    def energy(p=positions, q=charges, w=widths):
        return _ewald_energy(p, q, w, CELL, self_energy=True)

    for function, x, gradient in (
        (lambda p: energy(p=p), positions, -forces),
        (lambda q: energy(q=q), charges, dq),
        (lambda w: energy(w=w), widths, dw),
    ):
        slope, expected = _slope(function, x, gradient)
        assert slope == pytest.approx(expected, rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("self_energy", [False, True], ids=["", "self"])
def test_cluster_equals_the_erf_sum(self_energy):
    positions, charges, widths = _system(charged=True)
    cluster = torch.tensor([False, False, False])
    energy, forces, _, dw = _ours(
        Calculator(CoulombPotential()), positions, charges, widths, np.zeros((3, 3)),
        50.0, self_energy, cluster,
    )  # fmt: skip
    expected = _cluster_energy(positions, charges, widths, self_energy)
    assert abs(energy - expected) < 1e-12 * np.sum(np.abs(charges)) ** 2

    for function, x, gradient in (
        (lambda w: _cluster_energy(positions, charges, w, self_energy), widths, dw),
        (
            lambda p: _cluster_energy(p, charges, widths, self_energy),
            positions,
            -forces,
        ),
    ):
        slope, expected = _slope(function, x, gradient)
        assert slope == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_vanishing_widths_give_point_charges():
    positions, charges, _ = _system()
    p, q, c = (torch.tensor(x, dtype=DTYPE) for x in (positions, charges, CELL))
    q = q.reshape(-1, 1)
    indices, distances = compute_neighbors(p, c, 5.0)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.5)
    tiny = torch.full((len(p),), 1e-6, dtype=DTYPE)
    gaussian = gaussian_potentials(calculator, q, tiny, c, p, indices, distances)
    point = calculator(q, c, p, indices, distances)
    torch.testing.assert_close(gaussian, point, rtol=1e-13, atol=1e-13)


def test_bad_widths_and_potentials_are_refused():
    positions, charges, widths = _system(charged=True)
    p, q, w, c = (
        torch.tensor(x, dtype=DTYPE) for x in (positions, charges, widths, CELL)
    )
    q = q.reshape(-1, 1)
    indices, distances = compute_neighbors(p, c, 4.0)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.5)
    arguments = (q, w, c, p, indices, distances)
    for bad in (-w, w * 0.0, w[:3], w.float(), w * float("nan")):
        with pytest.raises((ValueError, TypeError), match="widths"):
            gaussian_potentials(calculator, q, bad, c, p, indices, distances)
    slab = torch.tensor([True, True, False])
    with pytest.raises(ValueError, match="neutral"):
        gaussian_potentials(calculator, *arguments, periodic=slab)
    from torchpme import InversePowerLawPotential

    other = EwaldCalculator(InversePowerLawPotential(exponent=2, smearing=1.0), 0.5)
    with pytest.raises(TypeError, match="CoulombPotential"):
        gaussian_potentials(other, *arguments)


def test_a_pair_list_gives_the_same_potentials():
    from torchpme.neighbors import PairList

    positions, charges, widths = _system()
    p, q, w, c = (
        torch.tensor(x, dtype=DTYPE) for x in (positions, charges, widths, CELL)
    )
    q = q.reshape(-1, 1)
    indices, distances = compute_neighbors(p, c, 5.0)
    calculator = PMECalculator(CoulombPotential(smearing=1.0), 0.5)
    plain = gaussian_potentials(calculator, q, w, c, p, indices, distances)
    listed = gaussian_potentials(calculator, q, w, c, p, PairList(indices), distances)
    torch.testing.assert_close(listed, plain, rtol=1e-13, atol=1e-13)
