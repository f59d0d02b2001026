"""A short-range network plus the long-range Coulomb term, trained on energies and forces.

The most common use of the library: a model whose short-range part is a small
neural network of the interatomic distances (here a pair potential with a smooth
cutoff) and whose long-range part is the Coulomb energy of learnable charges,
computed by a torchpme calculator,

.. math::

    E = \\sum_{i<j,\\ r_{ij} < r_c} \\phi_{Z_i Z_j}(r_{ij})
        + \\sum_i q_{Z_i} V_i(q), \\qquad \\mathbf F_i = -\\partial E/\\partial \\mathbf r_i.

The "truth" is a Born–Mayer repulsion between first neighbours plus the Coulomb
energy of charges ±0.8 e on distorted rock-salt cells of lattice constants 5.0 to
6.6 Å (a small synthetic data set made here). The network sees only the first
shell of neighbours (3.2 Å), so everything beyond must come from the Coulomb
term: training on energies and forces (the loss differentiates the forces, a
second derivative through the Ewald sum) recovers the charge, from a start at
0.3 e, to within 0.02 e.

Run: ``python examples/11_short_range_plus_coulomb.py``
"""

import torch

from torchpme import CoulombPotential, EwaldCalculator
from torchpme.neighbors import compute_neighbors

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

CUTOFF = 4.5  # the pair list: the Ewald sum's real-space cutoff
SHORT = 3.2  # the short-range part's cutoff: the first shell of neighbours
TRUE_CHARGE = 0.8


def rock_salt(a, generator):
    """One conventional NaCl cell (8 ions) of lattice constant ``a``, the ions
    displaced at random by up to 0.25 Å."""
    fcc = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]) * 0.5
    sodium = fcc * a
    chlorine = (fcc + torch.tensor([0.5, 0.0, 0.0])) * a
    positions = torch.cat([sodium, chlorine])
    positions += 0.25 * (2 * torch.rand(positions.shape, generator=generator) - 1)
    species = torch.tensor([0] * 4 + [1] * 4)
    return torch.eye(3) * a, positions, species


def smooth_cutoff(r):
    """1 at r = 0, 0 with zero slope at the short-range cutoff."""
    return 0.5 * (torch.cos(torch.pi * r / SHORT) + 1.0) * (r < SHORT)


def pair_type(species, pairs):
    """0 for Na–Na, 1 for Na–Cl, 2 for Cl–Cl."""
    return species[pairs[:, 0]] + species[pairs[:, 1]]


class Model(torch.nn.Module):
    """Short-range pair network plus the Coulomb energy of charges ±q."""

    def __init__(self, learned=True):
        super().__init__()
        self.learned = learned
        centres = torch.linspace(1.5, SHORT, 12)
        self.register_buffer("centres", centres)
        self.network = torch.nn.Sequential(
            torch.nn.Linear(12 + 3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.charge = torch.nn.Parameter(torch.tensor(0.3))
        self.coulomb = EwaldCalculator(CoulombPotential(smearing=1.0), 0.6)

    def pair_energy(self, distances, types):
        if not self.learned:  # the truth: Born–Mayer, harder for like ions
            strength = torch.tensor([1200.0, 900.0, 1500.0])[types]
            return strength * torch.exp(-distances / 0.3) * smooth_cutoff(distances)
        basis = torch.exp(-4.0 * (distances.unsqueeze(1) - self.centres) ** 2)
        features = torch.cat([basis, torch.nn.functional.one_hot(types, 3)], 1)
        return self.network(features).squeeze(1) * smooth_cutoff(distances)

    def forward(self, cell, positions, species, pairs, shifts):
        vectors = positions[pairs[:, 1]] - positions[pairs[:, 0]] + shifts @ cell
        distances = torch.linalg.norm(vectors, dim=1)
        short = self.pair_energy(distances, pair_type(species, pairs)).sum()
        charge = self.charge if self.learned else torch.tensor(TRUE_CHARGE)
        charges = (charge * (1.0 - 2.0 * species)).unsqueeze(1)
        long = self.coulomb.energy(charges, cell, positions, pairs, distances)
        return short + long


def energy_and_forces(model, system, create_graph):
    cell, positions, species, pairs, shifts = system
    positions = positions.clone().requires_grad_(True)
    energy = model(cell, positions, species, pairs, shifts)
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=create_graph)
    return energy, -gradient


def data_set(n_systems, seed):
    generator = torch.Generator().manual_seed(seed)
    truth = Model(learned=False)
    systems, targets = [], []
    for _ in range(n_systems):
        a = 5.0 + 1.6 * float(torch.rand((), generator=generator))
        cell, positions, species = rock_salt(a, generator)
        pairs, _, shifts = compute_neighbors(
            positions, cell, CUTOFF, return_shifts=True
        )
        system = (cell, positions, species, pairs, shifts.to(positions.dtype))
        energy, forces = energy_and_forces(truth, system, create_graph=False)
        systems.append(system)
        targets.append((energy.detach(), forces.detach()))
    return systems, targets


def errors(model, systems, targets):
    """RMS energy error per atom and RMS force error relative to the RMS force."""
    de, df, f2 = [], [], []
    for system, (energy, forces) in zip(systems, targets):
        e, f = energy_and_forces(model, system, create_graph=False)
        de.append(((e.detach() - energy) / len(forces)) ** 2)
        df.append(((f.detach() - forces) ** 2).mean())
        f2.append((forces**2).mean())
    rms = torch.sqrt(torch.stack(de).mean())
    return float(rms), float(
        torch.sqrt(torch.stack(df).mean() / torch.stack(f2).mean())
    )


def main():
    train, train_targets = data_set(16, seed=1)
    test, test_targets = data_set(6, seed=2)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    before = errors(model, test, test_targets)
    for epoch in range(100):
        optimizer.zero_grad()
        loss = 0.0
        for system, (energy, forces) in zip(train, train_targets):
            e, f = energy_and_forces(model, system, create_graph=True)
            n = len(forces)
            loss = loss + 10.0 * ((e - energy) / n) ** 2 + ((f - forces) ** 2).mean()
        (loss / len(train)).backward()
        optimizer.step()
        if epoch % 50 == 0:
            print(f"epoch {epoch:3d}  loss {float(loss.detach()) / len(train):.3e}  "
                  f"charge {float(model.charge.detach()):+.3f}")  # fmt: skip
    after = errors(model, test, test_targets)
    print(f"test RMS energy error per atom: {before[0]:.3e} -> {after[0]:.3e}")
    print(f"test relative RMS force error:  {before[1]:.3f} -> {after[1]:.3f}")
    print(
        f"learned charge {float(model.charge.detach()):+.3f} (truth {TRUE_CHARGE:+.3f})"
    )
    assert after[1] < 0.2 * before[1] and after[1] < 0.1
    assert abs(float(model.charge.detach()) - TRUE_CHARGE) < 0.02


if __name__ == "__main__":
    main()
