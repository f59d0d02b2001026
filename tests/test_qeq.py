"""Charge equilibration (torchpme.qeq) against the dense constrained solve in NumPy.

The Coulomb matrix of Gaussian charges is built here: the erf pair matrix for
clusters, and for crystals an Ewald matrix with per-atom reciprocal factors (checked
against the Gaussian Ewald energy of test_gaussian.py); the KKT system
``[[diag J + A, −1], [1ᵀ, 0]] [q, μ] = [−χ, Q]`` is solved densely. Gradients are
checked as directional central differences of the dense solution.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import erf, erfc
from test_gaussian import CELL, _ewald_energy

from torchpme import Calculator, CoulombPotential, EwaldCalculator, PMECalculator
from torchpme.gaussian import gaussian_potentials
from torchpme.neighbors import compute_neighbors
from torchpme.qeq import equilibrate

DTYPE = torch.float64
CLUSTER = torch.tensor([False, False, False])


def _parameters(n=7, seed=3):
    rng = np.random.default_rng(seed)
    return {
        "positions": rng.random((n, 3)) @ CELL,
        "chi": rng.normal(scale=0.5, size=n),
        "hardness": rng.uniform(0.8, 1.6, size=n),
        "widths": rng.uniform(0.4, 0.8, size=n),
    }


def _own(widths):
    """The Gaussians' own energy on the diagonal: E = ½ Σ q² / (√π σ)."""
    return np.diag(1.0 / (math.sqrt(math.pi) * widths))


def _cluster_matrix(positions, widths):
    r = np.linalg.norm(positions[None] - positions[:, None], axis=-1)
    np.fill_diagonal(r, np.inf)
    gamma = np.sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)
    return erf(r / (np.sqrt(2) * gamma)) / r + _own(widths)


def _ewald_matrix(positions, widths, cell, s=1.0):
    """``A`` with ``E_C = ½ qᵀAq`` for Gaussian charges in a crystal."""
    volume = abs(np.linalg.det(cell))
    gamma = np.sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)
    outer, inner = np.sqrt(2.0 * (gamma**2 + s**2)), np.sqrt(2.0) * gamma
    r_cut = 7.0 * outer.max()
    heights = volume / np.linalg.norm(
        np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1
    )
    matrix = np.zeros_like(gamma)
    for shift in itertools.product(
        *[range(-math.ceil(r_cut / h) - 1, math.ceil(r_cut / h) + 2) for h in heights]
    ):
        r = np.linalg.norm(
            positions[None] + np.array(shift) @ cell - positions[:, None], axis=-1
        )
        if not any(shift):
            np.fill_diagonal(r, np.inf)
        matrix += (erfc(r / outer) - erfc(r / inner)) / r
    k_cut = math.sqrt(80.0) / s
    reach = [math.ceil(k_cut * np.linalg.norm(a) / (2 * math.pi)) + 1 for a in cell]
    steps = np.array(list(itertools.product(*[range(-m, m + 1) for m in reach])), float)
    k = steps @ (2.0 * math.pi * np.linalg.inv(cell).T)
    k2 = np.sum(k**2, axis=1)
    keep = (k2 > 0) & (k2 <= k_cut**2)
    k, k2 = k[keep], k2[keep]
    weight = 4.0 * math.pi / volume * np.exp(-0.5 * k2 * s**2) / k2
    factors = np.exp(-0.5 * k2[:, None] * widths[None] ** 2) * np.exp(
        1j * k @ positions.T
    )
    matrix += np.real(np.einsum("k,ki,kj->ij", weight, factors, factors.conj()))
    matrix -= np.diag(math.sqrt(2.0 / math.pi) / np.sqrt(s**2 + 2 * widths**2))
    return matrix - 2.0 * math.pi * s**2 / volume + _own(widths)


def _dense(matrix, chi, hardness, total, fragments=None):
    """The KKT solve ``[[diag J + A, −Cᵀ], [C, 0]] [q, μ] = [−χ, Q]``."""
    n = len(chi)
    fragments = np.zeros(n, int) if fragments is None else np.asarray(fragments)
    count = fragments.max() + 1
    constraints = np.zeros((count, n))
    constraints[fragments, np.arange(n)] = 1.0
    kkt = np.zeros((n + count, n + count))
    kkt[:n, :n] = np.diag(hardness) + matrix
    kkt[:n, n:] = -constraints.T
    kkt[n:, :n] = constraints
    right = np.concatenate([-chi, np.broadcast_to(total, (count,))])
    return np.linalg.solve(kkt, right)[:n]


def _ours(
    calculator, values, cell, cutoff, total, periodic, fragments=None, solver="cg"
):
    tensors = {
        k: torch.tensor(v, dtype=DTYPE, requires_grad=True) for k, v in values.items()
    }
    c = tensors.get("cell", torch.tensor(cell, dtype=DTYPE))
    is_cluster = periodic is not None
    p = tensors["positions"]
    indices, _, shifts = compute_neighbors(
        p.detach(), None if is_cluster else c.detach(), cutoff, return_shifts=True
    )
    distances = torch.linalg.norm(
        p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c, dim=1
    )
    result = equilibrate(
        calculator, tensors["chi"], tensors["hardness"], tensors["widths"], c, p,
        indices, distances, total_charge=total, periodic=periodic, fragments=fragments,
        solver=solver,
    )  # fmt: skip
    return result, tensors


def test_reference_matrix_is_the_gaussian_ewald_energy():
    values = _parameters()
    q = np.random.default_rng(0).normal(size=len(values["chi"]))
    matrix = _ewald_matrix(values["positions"], values["widths"], CELL)
    expected = _ewald_energy(values["positions"], q, values["widths"], CELL, True)
    assert 0.5 * q @ matrix @ q == pytest.approx(expected, rel=1e-11)


SOLVERS = pytest.mark.parametrize("solver", ["cg", "dense"])


@SOLVERS
@pytest.mark.parametrize("total", [0.0, 1.0])
def test_cluster_charges_equal_the_dense_solve(total, solver):
    values = _parameters()
    result, _ = _ours(
        Calculator(CoulombPotential()), values, np.zeros((3, 3)), 50.0, total,
        CLUSTER, solver=solver,
    )  # fmt: skip
    matrix = _cluster_matrix(values["positions"], values["widths"])
    expected = _dense(matrix, values["chi"], values["hardness"], total)
    np.testing.assert_allclose(result.charges.detach().numpy(), expected, atol=1e-9)
    assert abs(float(result.charges.detach().sum()) - total) < 1e-12


@pytest.mark.parametrize(
    ("make", "tolerance"),
    [
        (lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.35), 1e-9),
        (lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.25, 7), 1e-6),
    ],
    ids=["ewald", "pme"],
)
@pytest.mark.parametrize("total", [0.0, 1.0])
@SOLVERS
def test_crystal_charges_equal_the_dense_solve(make, tolerance, total, solver):
    values = _parameters()
    result, _ = _ours(make(), values, CELL, 9.0, total, None, solver=solver)
    matrix = _ewald_matrix(values["positions"], values["widths"], CELL)
    expected = _dense(matrix, values["chi"], values["hardness"], total)
    np.testing.assert_allclose(
        result.charges.detach().numpy(), expected, atol=tolerance
    )
    assert abs(float(result.charges.detach().sum()) - total) < 1e-12


@SOLVERS
@pytest.mark.parametrize("periodic", [True, False], ids=["crystal", "cluster"])
def test_gradients_equal_differences_of_the_dense_solve(periodic, solver):
    values = _parameters(n=5)
    weights = np.random.default_rng(7).normal(size=5)
    if periodic:
        values["cell"] = CELL
        calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.35)
        result, tensors = _ours(calculator, values, CELL, 9.0, 0.0, None, solver=solver)

        def matrix(v):
            return _ewald_matrix(v["positions"], v["widths"], v["cell"])
    else:
        calculator = Calculator(CoulombPotential())
        result, tensors = _ours(
            calculator, values, np.zeros((3, 3)), 50.0, 0.0, CLUSTER, solver=solver
        )

        def matrix(v):
            return _cluster_matrix(v["positions"], v["widths"])

    loss = (result.charges * torch.tensor(weights)).sum()
    gradients = torch.autograd.grad(loss, list(tensors.values()))
    rng = np.random.default_rng(11)
    for (name, value), gradient in zip(values.items(), gradients):
        direction = rng.normal(size=value.shape)
        h = 1e-5

        def solved(x, name=name):
            v = {**values, name: x}
            return weights @ _dense(matrix(v), v["chi"], v["hardness"], 0.0)

        slope = (solved(value + h * direction) - solved(value - h * direction)) / (
            2 * h
        )
        assert float(np.sum(gradient.numpy() * direction)) == pytest.approx(
            slope, rel=1e-6, abs=1e-9
        ), name


def test_warm_start_takes_fewer_iterations():
    values = _parameters()
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.35)
    cold, _ = _ours(calculator, values, CELL, 9.0, 0.0, None)
    moved = {**values, "positions": values["positions"] + 0.01}
    tensors = {k: torch.tensor(v, dtype=DTYPE) for k, v in moved.items()}
    c = torch.tensor(CELL, dtype=DTYPE)
    indices, distances = compute_neighbors(tensors["positions"], c, 9.0)
    arguments = (
        calculator, tensors["chi"], tensors["hardness"], tensors["widths"], c,
        tensors["positions"], indices, distances,
    )  # fmt: skip
    again = equilibrate(*arguments, solver="cg")
    warm = equilibrate(*arguments, initial=cold.charges.detach(), solver="cg")
    torch.testing.assert_close(warm.charges, again.charges, rtol=0, atol=1e-9)
    assert warm.iterations < again.iterations


def test_bad_inputs_and_no_convergence_are_reported():
    values = _parameters()
    calculator = Calculator(CoulombPotential())
    tensors = {k: torch.tensor(v, dtype=DTYPE) for k, v in values.items()}
    zeros = torch.zeros(3, 3, dtype=DTYPE)
    indices, distances = compute_neighbors(tensors["positions"], None, 50.0)
    base = dict(tensors)

    def run(**changes):
        v = {**base, **changes}
        return equilibrate(
            calculator, v["chi"], v["hardness"], v["widths"], zeros, v["positions"],
            indices, distances, periodic=CLUSTER, max_iterations=v.get("iterations", 1000),
            solver=v.get("solver", "cg"),
        )  # fmt: skip

    with pytest.raises(ValueError, match="hardness"):
        run(hardness=-base["hardness"])
    with pytest.raises(ValueError, match="widths"):
        run(widths=0.0 * base["widths"])
    with pytest.raises(ValueError, match="electronegativity"):
        run(chi=base["chi"][:3])
    with pytest.raises(ValueError, match="fragments"):
        equilibrate(
            calculator, base["chi"], base["hardness"], base["widths"], zeros,
            base["positions"], indices, distances, periodic=CLUSTER,
            fragments=torch.tensor([0, 0, 2, 2, 2, 2, 2]),
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"max_iterations.*residual"):
        run(iterations=1)
    with pytest.raises(ValueError, match="solver"):
        run(solver="lu")


@SOLVERS
def test_fragments_keep_their_charges(solver):
    """Three molecules with their own charges (−1, 0, +2): the dense solve with one
    constraint per fragment, and the gradient of a loss by differences."""
    values = _parameters(n=7)
    fragments = np.array([0, 0, 1, 1, 1, 2, 2])
    totals = np.array([-1.0, 0.0, 2.0])
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), 0.35)
    result, tensors = _ours(
        calculator, values, CELL, 9.0, torch.tensor(totals), None,
        torch.tensor(fragments), solver,
    )  # fmt: skip
    matrix = _ewald_matrix(values["positions"], values["widths"], CELL)
    expected = _dense(matrix, values["chi"], values["hardness"], totals, fragments)
    charges = result.charges.detach().numpy()
    np.testing.assert_allclose(charges, expected, atol=1e-9)
    np.testing.assert_allclose(np.bincount(fragments, charges), totals, atol=1e-12)
    weights = np.arange(7.0)
    (gradient,) = torch.autograd.grad(
        (result.charges * torch.tensor(weights)).sum(), tensors["chi"]
    )
    direction = np.random.default_rng(5).normal(size=7)

    def solved(chi):
        return weights @ _dense(matrix, chi, values["hardness"], totals, fragments)

    h = 1e-5
    slope = (
        solved(values["chi"] + h * direction) - solved(values["chi"] - h * direction)
    ) / (2 * h)
    assert float(gradient.numpy() @ direction) == pytest.approx(slope, rel=1e-7)


def test_without_the_self_energy():
    values = _parameters()
    calculator = Calculator(CoulombPotential())
    tensors = {k: torch.tensor(v, dtype=DTYPE) for k, v in values.items()}
    indices, distances = compute_neighbors(tensors["positions"], None, 50.0)
    result = equilibrate(
        calculator, tensors["chi"], tensors["hardness"], tensors["widths"],
        torch.zeros(3, 3, dtype=DTYPE), tensors["positions"], indices, distances,
        periodic=CLUSTER, self_energy=False,
    )  # fmt: skip
    matrix = _cluster_matrix(values["positions"], values["widths"]) - _own(
        values["widths"]
    )
    expected = _dense(matrix, values["chi"], values["hardness"], 0.0)
    np.testing.assert_allclose(result.charges.numpy(), expected, atol=1e-9)


def _twice(periodic, solver="cg"):
    """``(function, inputs)`` for gradgradcheck: the charges from χ, J, σ and
    positions (and the cell for a crystal), solved to rounding."""
    values = _parameters(n=4, seed=8)
    if periodic:
        calculator, cell, cutoff, flags = (
            EwaldCalculator(CoulombPotential(smearing=1.0), 0.35), CELL, 9.0, None
        )  # fmt: skip
    else:
        calculator, cell, cutoff, flags = (
            Calculator(CoulombPotential()), np.zeros((3, 3)), 50.0, CLUSTER
        )  # fmt: skip
    c0 = torch.tensor(cell, dtype=DTYPE)
    indices, _, shifts = compute_neighbors(
        torch.tensor(values["positions"]), c0 if periodic else None, cutoff,
        return_shifts=True,
    )  # fmt: skip

    def charges(chi, hardness, widths, positions, c):
        vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
        distances = torch.linalg.norm(vectors + shifts.to(DTYPE) @ c, dim=1)
        return equilibrate(
            calculator, chi, hardness, widths, c, positions, indices, distances,
            periodic=flags, tolerance=1e-14, solver=solver,
        ).charges  # fmt: skip

    inputs = [
        torch.tensor(values[k], dtype=DTYPE, requires_grad=True)
        for k in ("chi", "hardness", "widths", "positions")
    ] + [c0.clone().requires_grad_(periodic)]
    return charges, inputs


@SOLVERS
@pytest.mark.parametrize("periodic", [True, False], ids=["crystal", "cluster"])
def test_charges_are_twice_differentiable(periodic, solver):
    """gradgradcheck (second derivatives against differences of the first)."""
    charges, inputs = _twice(periodic, solver)
    assert torch.autograd.gradgradcheck(charges, inputs, atol=1e-6, rtol=1e-5)


def test_forces_in_a_loss_differentiate_to_the_electronegativity():
    """A training step's gradient: d/dχ of ‖F‖² with F = −dE_C/dr the forces of
    the Coulomb energy of the equilibrated charges (which, unlike the whole Qeq
    energy, is not stationary in them, so F holds dq/dr and the loss d²q/dχdr),
    against central differences of the same loss."""
    charges, inputs = _twice(False)
    calculator = Calculator(CoulombPotential())
    chi, hardness, widths, positions, cell = inputs

    def loss(chi_value):
        p = positions.detach().clone().requires_grad_()
        q = charges(chi_value, hardness, widths, p, cell)
        i = torch.tensor([[a, b] for a in range(4) for b in range(a + 1, 4)])
        d = torch.linalg.norm(p[i[:, 1]] - p[i[:, 0]], dim=1)
        energy = (q.unsqueeze(1) * gaussian_potentials(
            calculator, q.unsqueeze(1), widths, cell, p, i, d, CLUSTER, True
        )).sum()  # fmt: skip
        (forces,) = torch.autograd.grad(-energy, p, create_graph=True)
        return (forces**2).sum()

    (gradient,) = torch.autograd.grad(loss(chi), chi)
    direction = torch.tensor(np.random.default_rng(2).normal(size=4))
    h = 1e-5
    slope = (
        loss((chi + h * direction).detach()) - loss((chi - h * direction).detach())
    ) / (2 * h)
    assert float(gradient @ direction) == pytest.approx(float(slope.detach()), rel=1e-6)


@SOLVERS
def test_an_indefinite_hessian_is_refused(solver):
    """Two nearly coincident atoms without their own energy and with a tiny
    hardness: ``H`` has a negative direction, which no minimum exists along."""
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [3.0, 0.0, 0.0]])
    positions = positions.to(DTYPE)
    widths = torch.full((3,), 0.5, dtype=DTYPE)
    indices, distances = compute_neighbors(positions, None, 50.0)
    with pytest.raises(ValueError, match=r"hardness.*positive definite"):
        equilibrate(
            Calculator(CoulombPotential()), torch.tensor([0.3, -0.3, 0.1], dtype=DTYPE),
            torch.full((3,), 1e-3, dtype=DTYPE), widths, torch.zeros(3, 3, dtype=DTYPE),
            positions, indices, distances, periodic=CLUSTER, self_energy=False,
            solver=solver,
        )  # fmt: skip
