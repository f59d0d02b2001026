"""Training a model of charges and dipoles on the energies and forces of crystals.

A model that gives each atom a charge ``q_i`` and a dipole ``μ_i`` from its
environment has the long-range energy

.. math::

    E = \\tfrac12 \\sum_i (q_i φ_i − μ_i·E_i),

``φ_i`` and ``E_i`` the potential and field of all the other atoms and their
periodic images, which :class:`torchpme.multipoles.MultipoleCalculator` computes
with Ewald's split and the long range on a P3M mesh. The forces are
``F = −dE/dr`` through the pairs, the mesh *and* the environment-dependent
``q`` and ``μ``, and a loss on them needs the derivative of ``F`` with respect
to the model's weights: a second derivative of the energy, which the calculator
provides (it is twice differentiable).

Here a "teacher" gives reference charges, dipoles, energies and forces for a few
random two-element crystals: ``q_i = q_Z − a_Z (1 − e^{−n_i/2})`` (``n_i`` a smooth
coordination number, the mean of each crystal subtracted so that it is neutral)
and ``μ_i = Σ_j w_Z(r_ij) r̂_ij`` (a smooth radial weight per element). A small
network of the element and ``n_i`` with a learned radial weight, starting from
other weights, learns both from the references by minimising

.. math::

    L = \\frac{⟨ΔE²⟩}{⟨E²⟩} + \\frac{⟨|ΔF|²⟩}{⟨|F|²⟩}
      + \\frac{⟨Δq²⟩}{⟨q²⟩} + \\frac{⟨|Δμ|²⟩}{⟨|μ|²⟩},

then predicts crystals it has not seen. The last two terms are there because the
energy is quadratic in ``(q, μ)``: ``(−q, −μ)`` gives the same energies and forces,
and so, nearly, does ``(−q, μ)`` where the charge–dipole terms are small. A model
trained on energies and forces alone can settle on flipped charges; reference
charges and dipoles (or a few of them) fix the sign.

Run: ``python examples/07_multipole_training.py``
"""

import math

import torch

from torchpme import CoulombPotential, P3MCalculator
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

# Ewald split σ = 1.2 with a real-space cutoff of 5σ and a 5-node P3M mesh: forces
# within a relative ~2e-5 of a converged sum (mesh_spacing 0.6 gives 32³ points here)
CUTOFF = 6.0
CALCULATOR = MultipoleCalculator(
    P3MCalculator(
        CoulombPotential(smearing=1.2), mesh_spacing=0.6, interpolation_nodes=5
    )
).to(torch.float64)
ENVIRONMENT = 4.0  # what the charges and dipoles see, within CUTOFF

# the teacher, per element (two of them): q_Z, a_Z and the scale of w_Z
CHARGE = torch.tensor([0.6, -0.6])
SLOPE = torch.tensor([0.3, -0.2])
DIPOLE = torch.tensor([0.15, -0.25])


def random_crystal(n_atoms, length=7.0, closest=1.5):
    """Random atoms in a slightly triclinic cell, no two closer than ``closest``
    (periodic images included)."""
    cell = length * torch.eye(3) + 0.6 * (torch.rand(3, 3) - 0.5)
    positions = torch.empty(0, 3)
    while len(positions) < n_atoms:
        trial = torch.cat([positions, torch.rand(1, 3) @ cell])
        if len(compute_neighbors(trial, cell, closest)[0]) == 0:
            positions = trial
    species = torch.randint(0, 2, (n_atoms,))
    # the pairs are fixed; their vectors are recomputed from positions for forces
    indices, _, shifts = compute_neighbors(positions, cell, CUTOFF, return_shifts=True)
    return {"cell": cell, "positions": positions, "species": species,
            "indices": indices, "shifts": shifts.to(cell.dtype)}  # fmt: skip


def switch(r):
    """``½ (1 + cos(π r / r_c))`` inside ``r_c = ENVIRONMENT``, 0 beyond: smooth."""
    inside = r < ENVIRONMENT
    return torch.where(inside, 0.5 * (1.0 + torch.cos(math.pi * r / ENVIRONMENT)), 0.0)


class Teacher:
    """The reference model: fixed charges ``q_Z`` and radial weights ``w_Z``."""

    def charge(self, species, n):
        return CHARGE[species] - SLOPE[species] * (1.0 - torch.exp(-0.5 * n))

    def radial(self, species, r):
        return DIPOLE[species] * torch.exp(-(((r - 2.5) / 0.7) ** 2))


class Student(torch.nn.Module):
    """Charges from an element embedding and ``n_i``; radial weights on Gaussians."""

    def __init__(self, hidden=16, n_basis=8):
        super().__init__()
        self.embedding = torch.nn.Embedding(2, 4)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(5, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )
        self.register_buffer("centres", torch.linspace(1.0, ENVIRONMENT, n_basis))
        self.weights = torch.nn.Parameter(0.1 * torch.randn(2, n_basis))

    def charge(self, species, n):
        features = torch.cat([self.embedding(species), n.unsqueeze(1)], 1)
        return self.net(features).squeeze(1)

    def radial(self, species, r):
        basis = torch.exp(-(((r.unsqueeze(1) - self.centres) / 0.5) ** 2))
        return (basis * self.weights[species]).sum(1)


def multipoles(model, species, indices, vectors):
    """Neutral charges and dipoles of a crystal from its (half) list of pairs."""
    i, j = indices[:, 0], indices[:, 1]
    r = torch.linalg.norm(vectors, dim=1)
    smooth = switch(r)
    n = torch.zeros(len(species)).index_add(0, i, smooth).index_add(0, j, smooth)
    charges = model.charge(species, n)
    # each pair once in the list: j's neighbour i lies along −r̂_ij
    along = (smooth / r).unsqueeze(1) * vectors
    dipoles = torch.zeros(len(species), 3).index_add(
        0, i, model.radial(species[i], r).unsqueeze(1) * along
    )
    dipoles = dipoles.index_add(0, j, -model.radial(species[j], r).unsqueeze(1) * along)
    return charges - charges.mean(), dipoles


def predict(model, crystal, create_graph=False):
    """Charges, dipoles, energy and forces, with the pair vectors recomputed from
    the positions so that the forces see every path through them."""
    positions = crystal["positions"].clone().requires_grad_(True)
    cell, indices = crystal["cell"], crystal["indices"]
    vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
    vectors = vectors + crystal["shifts"] @ cell
    charges, dipoles = multipoles(model, crystal["species"], indices, vectors)
    energy = CALCULATOR.energy(charges, dipoles, cell, positions, indices, vectors)
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=create_graph)
    return charges, dipoles, energy, -gradient


def errors(model, crystals, references, create_graph=False):
    """Mean squares of the charge, dipole, energy and force errors."""
    squares = torch.zeros(4)
    for crystal, reference in zip(crystals, references):
        predicted = predict(model, crystal, create_graph)
        squares = squares + torch.stack(
            [((p - r) ** 2).mean() for p, r in zip(predicted, reference)]
        ) / len(crystals)
    return squares


def main():
    train = [random_crystal(n) for n in (8, 9, 10, 10, 11, 12)]
    test = [random_crystal(n) for n in (9, 12)]
    teacher = Teacher()
    train_ref = [[x.detach() for x in predict(teacher, c)] for c in train]
    test_ref = [[x.detach() for x in predict(teacher, c)] for c in test]
    scale = torch.stack(
        [torch.stack([(x**2).mean() for x in ref]) for ref in train_ref]
    ).mean(0)

    model = Student()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    print(f"{'step':>5}{'loss':>11}" + "".join(f"{'RMSE ' + k:>11}" for k in "qμEF"))
    history = []
    for step in range(71):
        optimizer.zero_grad()
        squares = errors(model, train, train_ref, create_graph=True)
        loss = (squares / scale).sum()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if step % 10 == 0:
            rmse = squares.detach().sqrt().tolist()
            print(f"{step:5d}{history[-1]:11.2e}" + "".join(f"{e:11.2e}" for e in rmse))

    final = errors(model, train, train_ref).detach().sqrt()
    unseen = errors(model, test, test_ref).detach().sqrt()
    typical = scale.sqrt()
    print(f"loss fell {history[0] / history[-1]:.0f}-fold")
    for name, rmse in (("training", final), ("unseen", unseen)):
        print(
            f"{name:<9} force RMSE {rmse[3]:.1e} (forces ~{typical[3]:.2f}), "
            f"dipole RMSE {rmse[1]:.1e} (dipoles ~{typical[1]:.2f}), "
            f"charge RMSE {rmse[0]:.1e} (charges ~{typical[0]:.2f})"
        )
    assert history[0] / history[-1] > 100, history
    assert final[3] < 0.1 * typical[3], final
    assert unseen[3] < 0.2 * typical[3], unseen


if __name__ == "__main__":
    main()
