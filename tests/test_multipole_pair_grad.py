"""The pair energy of charges and dipoles through its autograd Function
(torchpme._core.multipole_pair_grad) against the per-pair formula differentiated
by autograd: energies, gradients, second derivatives and TorchScript."""

import math

import numpy as np
import pytest
import torch

import torchpme._core.defaults as defaults
from torchpme import CoulombPotential, P3MCalculator
from torchpme._core.multipole_pairs import multipole_pair_energy
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors

DTYPE = torch.float64
CELL = np.array([[6.0, 0.0, 0.0], [0.7, 5.6, 0.0], [-0.4, 0.5, 6.2]])
KINDS = ["charges", "dipoles", "both"]


def _reference(charges, dipoles, indices, vectors, alpha, full):
    """The energy pair by pair as written: ``R = r_i − r_j``, ``B_0 = erfc(αr)/r``
    and ``B_l = [(2l − 1) B_{l−1} + (2α²)^l e^{−α²r²}/(α√π)] / r²``, and
    ``q_i q_j B_0 + [q_i (μ_j·R) − q_j (μ_i·R) + μ_i·μ_j] B_1 − (μ_i·R)(μ_j·R)
    B_2``, differentiated by autograd."""
    i, j = indices[:, 0], indices[:, 1]
    r = -vectors
    d = torch.sqrt((r * r).sum(dim=1))
    if alpha == 0.0:
        b0 = 1.0 / d
        b1 = b0 / d**2
        b2 = 3.0 * b1 / d**2
    else:
        g = torch.exp(-((alpha * d) ** 2)) / (alpha * math.sqrt(math.pi))
        b0 = torch.erfc(alpha * d) / d
        b1 = (b0 + 2.0 * alpha**2 * g) / d**2
        b2 = (3.0 * b1 + 4.0 * alpha**4 * g) / d**2
    qi, qj, mi, mj = charges[i], charges[j], dipoles[i], dipoles[j]
    mi_r, mj_r = (mi * r).sum(dim=1), (mj * r).sum(dim=1)
    pair = (
        qi * qj * b0
        + (qi * mj_r - qj * mi_r + (mi * mj).sum(dim=1)) * b1
        - mi_r * mj_r * b2
    )
    return 0.5 * pair.sum() if full else pair.sum()


def _system(kind="both", n=12, seed=0, full=False, cutoff=4.0):
    """Charges ``(n,)``, dipoles ``(n, 3)``, pairs and their vectors of ``n``
    atoms in ``CELL`` (``kind``: which of charges and dipoles are nonzero)."""
    rng = np.random.default_rng(seed)
    positions = torch.tensor(rng.random((n, 3)) @ CELL, dtype=DTYPE)
    cell = torch.tensor(CELL, dtype=DTYPE)
    charges = torch.tensor(rng.normal(size=n), dtype=DTYPE)
    dipoles = torch.tensor(0.5 * rng.normal(size=(n, 3)), dtype=DTYPE)
    if kind == "charges":
        dipoles = torch.zeros_like(dipoles)
    if kind == "dipoles":
        charges = torch.zeros_like(charges)
    indices, _, shifts = compute_neighbors(
        positions, cell, cutoff, full_list=full, return_shifts=True
    )
    indices = indices.detach()
    vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
    vectors = (vectors + shifts.to(DTYPE) @ cell).detach()
    return charges, dipoles, indices, vectors


def _leaves(*tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


def test_the_function_runs_in_eager_mode():
    charges, dipoles, indices, vectors = _system()
    q, mu, v = _leaves(charges, dipoles, vectors)
    energy = multipole_pair_energy(q, mu, indices, v, 0.4, False)
    assert "PairEnergy" in type(energy.grad_fn).__name__


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [0.4, 0.0], ids=["screened", "bare"])
@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_energy_and_gradients_equal_the_pair_formula(kind, alpha, full):
    charges, dipoles, indices, vectors = _system(kind, full=full)
    results = []
    for energy_of in (multipole_pair_energy, _reference):
        q, mu, v = _leaves(charges, dipoles, vectors)
        energy = energy_of(q, mu, indices, v, alpha, full)
        results.append((energy, *torch.autograd.grad(energy, (q, mu, v))))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_a_full_list_gives_the_energy_of_the_half_list(full):
    charges, dipoles, indices, vectors = _system()
    half = multipole_pair_energy(charges, dipoles, indices, vectors, 0.4, False)
    both = torch.cat([indices, indices.flip(1)])
    full_energy = multipole_pair_energy(
        charges, dipoles, both, torch.cat([vectors, -vectors]), 0.4, True
    )
    torch.testing.assert_close(full_energy, half, rtol=1e-13, atol=0.0)


def test_chunks_give_the_same_energy_and_gradients(monkeypatch):
    charges, dipoles, indices, vectors = _system(n=16)
    results = []
    for pairs in (1 << 16, 7):
        monkeypatch.setattr(defaults, "PAIRS", pairs)
        q, mu, v = _leaves(charges, dipoles, vectors)
        energy = multipole_pair_energy(q, mu, indices, v, 0.4, False)
        results.append((energy, *torch.autograd.grad(energy, (q, mu, v))))
    for many, one in zip(*results):
        torch.testing.assert_close(many, one, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("alpha", [0.4, 0.0], ids=["screened", "bare"])
@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_gradcheck_and_gradgradcheck(alpha, full):
    charges, dipoles, indices, vectors = _system(n=5, full=full, cutoff=3.0)
    assert 0 < indices.shape[0] < 40

    def energy(q, mu, v):
        return multipole_pair_energy(q, mu, indices, v, alpha, full)

    inputs = tuple(_leaves(charges, dipoles, vectors))
    assert torch.autograd.gradcheck(energy, inputs)
    assert torch.autograd.gradgradcheck(energy, inputs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_forces_in_a_loss_equal_the_pair_formula(kind, full):
    """``∂/∂(q, μ, v)`` of ``‖∂E/∂v‖² + ‖∂E/∂μ‖²`` (second derivatives through
    the differentiable backward)."""
    charges, dipoles, indices, vectors = _system(kind, full=full)
    results = []
    for energy_of in (multipole_pair_energy, _reference):
        q, mu, v = _leaves(charges, dipoles, vectors)
        energy = energy_of(q, mu, indices, v, 0.4, full)
        grad_mu, grad_v = torch.autograd.grad(energy, (mu, v), create_graph=True)
        loss = (grad_v**2).sum() + (grad_mu**2).sum()
        results.append(torch.autograd.grad(loss, (q, mu, v)))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, rtol=1e-11, atol=1e-12)


def test_inputs_without_gradients_and_no_pairs():
    charges, dipoles, indices, vectors = _system()
    v = vectors.clone().requires_grad_(True)
    energy = multipole_pair_energy(charges, dipoles, indices, v, 0.4, False)
    (grad,) = torch.autograd.grad(energy, v)
    reference = _reference(charges, dipoles, indices, v, 0.4, False)
    (expected,) = torch.autograd.grad(reference, v)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-13)

    q, mu, v = _leaves(charges, dipoles, vectors[:0])
    energy = multipole_pair_energy(q, mu, indices[:0], v, 0.4, False)
    grads = torch.autograd.grad(energy, (q, mu, v))
    assert float(energy.detach()) == 0.0
    assert [g.shape for g in grads] == [q.shape, mu.shape, v.shape]
    assert all(float(g.abs().sum()) == 0.0 for g in grads)


class _Energy(torch.nn.Module):
    """A module whose forward calls ``MultipoleCalculator.energy`` (so that
    scripting compiles the pair energy)."""

    def __init__(self, calculator: MultipoleCalculator):
        super().__init__()
        self.calculator = calculator

    def forward(self, charges, dipoles, cell, positions, indices, vectors):
        return self.calculator.energy(
            charges, dipoles, cell, positions, indices, vectors
        )


@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_torchscript_gives_the_same_energy_and_forces(full):
    rng = np.random.default_rng(1)
    n = 8
    cell = torch.tensor(CELL, dtype=DTYPE)
    positions = rng.random((n, 3)) @ CELL
    charges = torch.tensor(rng.normal(size=n), dtype=DTYPE)
    dipoles = torch.tensor(0.5 * rng.normal(size=(n, 3)), dtype=DTYPE)
    potential = CoulombPotential(smearing=1.5)
    mesh = P3MCalculator(potential, 0.5, 4, full_neighbor_list=full).to(DTYPE)
    module = _Energy(MultipoleCalculator(mesh))
    indices, _, shifts = compute_neighbors(
        torch.tensor(positions, dtype=DTYPE), cell, 6.0, full_list=full,
        return_shifts=True,
    )  # fmt: skip
    results = []
    for run in (module, torch.jit.script(module)):
        p = torch.tensor(positions, dtype=DTYPE, requires_grad=True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ cell
        energy = run(charges, dipoles, cell, p, indices, vectors)
        results.append((energy, *torch.autograd.grad(energy, p)))
    for eager, scripted in zip(*results):
        torch.testing.assert_close(scripted, eager, rtol=1e-12, atol=1e-13)


def test_no_grad_and_torch_func_give_the_same_values():
    charges, dipoles, indices, vectors = _system()
    q, mu, v = _leaves(charges, dipoles, vectors)
    energy = multipole_pair_energy(q, mu, indices, v, 0.4, False)
    (expected,) = torch.autograd.grad(energy, v)
    with torch.no_grad():
        unrecorded = multipole_pair_energy(q, mu, indices, v, 0.4, False)
    torch.testing.assert_close(unrecorded, energy.detach(), rtol=0.0, atol=0.0)
    transformed = torch.func.grad(
        lambda v: multipole_pair_energy(charges, dipoles, indices, v, 0.4, False)
    )(vectors)
    torch.testing.assert_close(transformed, expected, rtol=1e-12, atol=1e-13)
