"""Electrostatics of ionic crystals: Madelung constants with Ewald, PME and P3M.

The Coulomb energy of a perfect ionic crystal is ``E = −M N_pairs q² / r0`` with the
nearest-neighbour distance ``r0`` and the Madelung constant ``M`` of the lattice.
This script builds rock salt, CsCl and zincblende, computes ``E = Σ_i q_i V_i``
with each calculator and compares ``M`` with its published value.

Run: ``python examples/01_crystal_electrostatics.py``
"""

import math

import torch

from torchpme.calculators import EwaldCalculator, P3MCalculator, PMECalculator
from torchpme.neighbors import compute_neighbors
from torchpme.potentials import CoulombPotential

torch.set_default_dtype(torch.float64)

# Madelung constants for E = −M z² / r0 per ion pair (Johnson & Templeton 1961)
CRYSTALS = {
    # name: (cell, fractional positions, charges, r0 / lattice constant, M)
    "rock salt": (
        torch.eye(3),
        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        + [[0.5, 0.5, 0.5], [0, 0, 0.5], [0, 0.5, 0], [0.5, 0, 0]],
        [1.0] * 4 + [-1.0] * 4,
        0.5,
        1.747564594633,
    ),
    "CsCl": (
        torch.eye(3),
        [[0, 0, 0], [0.5, 0.5, 0.5]],
        [1.0, -1.0],
        math.sqrt(3) / 2,
        1.762674773070,
    ),
    "zincblende": (
        0.5 * torch.tensor([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]]),
        [[0, 0, 0], [0.25, 0.25, 0.25]],
        [1.0, -1.0],
        math.sqrt(3) / 4,
        1.638055053388,
    ),
}


def madelung(name: str, method: str) -> float:
    cell, fractional, charges, r0, _ = CRYSTALS[name]
    positions = torch.tensor(fractional, dtype=torch.float64) @ cell
    charges = torch.tensor(charges).reshape(-1, 1)
    cutoff = 0.99  # lattice constant 1: a cutoff of about one cell
    smearing = cutoff / 5.0
    potential = CoulombPotential(smearing=smearing)
    if method == "Ewald":
        calculator = EwaldCalculator(potential, lr_wavelength=smearing / 2)
    elif method == "PME":
        calculator = PMECalculator(potential, mesh_spacing=smearing / 6)
    else:
        calculator = P3MCalculator(potential, mesh_spacing=smearing / 6)
    indices, distances = compute_neighbors(positions, cell, cutoff)
    potentials = calculator(charges, cell, positions, indices, distances)
    energy = float((charges * potentials).sum())
    pairs = len(charges) / 2
    return -energy * r0 / pairs


def main():
    print(
        f"{'crystal':<12}{'method':<7}{'computed M':>14}{'reference':>14}{'error':>10}"
    )
    worst = 0.0
    for name, (*_, reference) in CRYSTALS.items():
        for method in ("Ewald", "PME", "P3M"):
            value = madelung(name, method)
            error = abs(value - reference)
            worst = max(worst, error)
            print(f"{name:<12}{method:<7}{value:14.8f}{reference:14.8f}{error:10.1e}")
    assert worst < 1e-4, f"Madelung constants off by {worst}"


if __name__ == "__main__":
    main()
