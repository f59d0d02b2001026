"""Training electronegativities through charge equilibration, with forces in the loss.

In a charge-equilibration (Qeq) model the charges are not predicted directly: a
model predicts each atom's electronegativity ``χ_i`` and the charges minimise

.. math::

    E(q) = \\sum_i χ_i q_i + \\tfrac12 \\sum_i J_i q_i² + E_C(q),
    \\qquad \\sum_i q_i = 0,

with hardnesses ``J_i`` and ``E_C = Σ_i q_i V_i`` the Coulomb energy of Gaussian
charges of widths ``σ_i`` (:func:`torchpme.gaussian.gaussian_potentials` with their
own energy). :func:`torchpme.qeq.equilibrate` solves for them and differentiates the
solution implicitly. The forces are ``F = −dE/dr``, and a loss on them needs the
derivative of ``F`` with respect to the model's weights: the derivative of the
charges twice over, once in the positions and once in ``χ``, which the solver
provides.

Here a "teacher" with a coordination-dependent ``χ_i = χ_Z − a_Z (1 − e^{−n_i})``
(``n_i`` a smooth coordination number) gives reference charges, energies and forces
for a few random clusters of two elements; a small network of the element and
``n_i`` learns ``χ`` from them (``J`` and ``σ`` are the teacher's) by minimising

.. math::

    L = \\frac{⟨Δq²⟩}{⟨q²⟩} + \\frac{⟨ΔE²⟩}{⟨E²⟩} + \\frac{⟨|ΔF|²⟩}{⟨|F|²⟩},

then predicts clusters it has not seen.

Run: ``python examples/06_qeq_training.py``
"""

import torch

from torchpme import Calculator, CoulombPotential
from torchpme.gaussian import gaussian_potentials
from torchpme.neighbors import compute_neighbors
from torchpme.qeq import equilibrate

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

# per element (two of them): hardness J, Gaussian width σ, the teacher's χ_Z and a_Z
HARDNESS = torch.tensor([1.0, 1.4])
WIDTHS = torch.tensor([0.7, 0.5])
CHI = torch.tensor([-0.3, 0.4])
SLOPE = torch.tensor([0.5, -0.6])
CLUSTER = torch.tensor([False, False, False])
CALCULATOR = Calculator(CoulombPotential())


def random_cluster(n_atoms, box=4.0, closest=1.5):
    """Random positions in a cube, no two atoms closer than ``closest``."""
    positions = torch.empty(0, 3)
    while len(positions) < n_atoms:
        trial = torch.rand(1, 3) * box
        if len(positions) == 0 or torch.cdist(trial, positions).min() > closest:
            positions = torch.cat([positions, trial])
    species = torch.randint(0, 2, (n_atoms,))
    # every pair: the direct sum and its Gaussian correction need all of them
    indices, _ = compute_neighbors(positions, None, 4.0 * box)
    return {"positions": positions, "species": species, "indices": indices}


def coordination(distances, indices, n_atoms, r0=2.2):
    """Smooth coordination numbers ``n_i = Σ_j 1 / (1 + e^{8(r_ij/r0 − 1)})``."""
    counts = torch.sigmoid(-8.0 * (distances / r0 - 1.0))
    n = torch.zeros(n_atoms).index_add(0, indices[:, 0], counts)
    return n.index_add(0, indices[:, 1], counts)


def teacher(species, n):
    return CHI[species] - SLOPE[species] * (1.0 - torch.exp(-n))


class Student(torch.nn.Module):
    """``χ_i`` from the one-hot element and the coordination number."""

    def __init__(self, hidden=16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, species, n):
        features = torch.cat(
            [torch.nn.functional.one_hot(species, 2).to(n.dtype), n.unsqueeze(1)], 1
        )
        return self.net(features).squeeze(1)


def qeq(electronegativity, system, create_graph=False):
    """Charges, energy and forces of one cluster with ``χ = electronegativity(Z, n)``.

    The distances are recomputed from the positions, so that the forces see every
    path through them (coordination, charges and Coulomb energy)."""
    positions = system["positions"].clone().requires_grad_(True)
    species, indices = system["species"], system["indices"]
    distances = torch.linalg.norm(
        positions[indices[:, 1]] - positions[indices[:, 0]], dim=1
    )
    chi = electronegativity(species, coordination(distances, indices, len(species)))
    hardness, widths, cell = HARDNESS[species], WIDTHS[species], torch.zeros(3, 3)
    arguments = (cell, positions, indices, distances)
    charges = equilibrate(
        CALCULATOR, chi, hardness, widths, *arguments, periodic=CLUSTER
    ).charges
    potentials = gaussian_potentials(
        CALCULATOR, charges.unsqueeze(1), widths, *arguments, CLUSTER, True
    )[:, 0]
    energy = (chi * charges + 0.5 * hardness * charges**2 + charges * potentials).sum()
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=create_graph)
    return charges, energy, -gradient


def errors(model, systems, references):
    """Mean squares of the charge, energy and force errors over the clusters."""
    squares = torch.zeros(3)
    for system, reference in zip(systems, references):
        predicted = qeq(model, system, create_graph=model.training)
        for k, (p, r) in enumerate(zip(predicted, reference)):
            squares[k] = squares[k] + ((p - r) ** 2).mean() / len(systems)
    return squares


def main():
    train = [random_cluster(n) for n in (8, 9, 10, 10, 11, 12)]
    test = [random_cluster(n) for n in (9, 12)]
    train_ref = [[x.detach() for x in qeq(teacher, s)] for s in train]
    test_ref = [[x.detach() for x in qeq(teacher, s)] for s in test]
    # each term relative to the mean square of its reference values
    scale = torch.stack(
        [torch.stack([(x**2).mean() for x in ref]) for ref in train_ref]
    ).mean(0)

    model = Student()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    print(f"{'step':>5}{'loss':>11}{'RMSE q':>11}{'RMSE E':>11}{'RMSE F':>11}")
    history = []
    for step in range(121):
        optimizer.zero_grad()
        squares = errors(model, train, train_ref)
        loss = (squares / scale).sum()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if step % 20 == 0:
            rmse = squares.detach().sqrt().tolist()
            print(f"{step:5d}{history[-1]:11.2e}" + "".join(f"{e:11.2e}" for e in rmse))

    model.eval()
    final = errors(model, train, train_ref).detach().sqrt()
    unseen = errors(model, test, test_ref).detach().sqrt()
    print(f"loss fell {history[0] / history[-1]:.0f}-fold")
    for name, rmse in (("training", final), ("unseen", unseen)):
        print(
            f"{name:<9} charge RMSE {rmse[0]:.1e} (charges ~{scale[0].sqrt():.2f}), "
            f"force RMSE {rmse[2]:.1e} (forces ~{scale[2].sqrt():.2f})"
        )
    assert history[0] / history[-1] > 1000, history
    assert final[0] < 0.01 * scale[0].sqrt(), final
    assert unseen[0] < 0.05 * scale[0].sqrt(), unseen


if __name__ == "__main__":
    main()
