"""Choosing parameters: tune Ewald, PME and P3M for a target accuracy.

:func:`torchpme.tuning.tune_ewald`, :func:`~torchpme.tuning.tune_pme` and
:func:`~torchpme.tuning.tune_p3m` pick the smearing from the real-space cutoff
and the requested accuracy, then search the reciprocal-space parameters for the
fastest set whose error bound meets it. Here the tuned calculators are compared
with a converged Ewald sum: the RMS force error stays near the requested bound.

Run: ``python examples/05_tuning.py``
"""

import torch

from torchpme.calculators import EwaldCalculator, P3MCalculator, PMECalculator
from torchpme.neighbors import compute_neighbors
from torchpme.potentials import CoulombPotential
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

CUTOFF = 5.0
ACCURACY = 1e-3


def system(n_atoms=64, box=9.0):
    cell = box * torch.eye(3)
    positions = torch.rand(n_atoms, 3) * box
    charges = torch.tensor([1.0, -1.0] * (n_atoms // 2)).reshape(-1, 1)
    return cell, positions, charges


def forces(calculator, cell, positions, charges, cutoff):
    positions = positions.clone().requires_grad_(True)
    indices, distances = compute_neighbors(positions, cell, cutoff)
    potentials = calculator(charges, cell, positions, indices, distances)
    energy = (charges * potentials).sum()
    return -torch.autograd.grad(energy, positions)[0]


def main():
    cell, positions, charges = system()
    # reference: Ewald at a tight, hand-picked setting
    reference = forces(
        EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=0.25),
        cell,
        positions,
        charges,
        10.0,
    )
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    tuners = {
        "ewald": (tune_ewald, EwaldCalculator),
        "pme": (tune_pme, PMECalculator),
        "p3m": (tune_p3m, P3MCalculator),
    }
    for name, (tune, calculator_class) in tuners.items():
        smearing, params, timing = tune(
            charges, cell, positions, CUTOFF, indices, distances, accuracy=ACCURACY
        )
        calculator = calculator_class(CoulombPotential(smearing=smearing), **params)
        error = forces(calculator, cell, positions, charges, CUTOFF) - reference
        rms = float(error.pow(2).sum(dim=1).mean().sqrt())
        print(
            f"{name:6s} smearing={smearing:.3f} {params} "
            f"time={1e3 * timing:.2f} ms  RMS force error {rms:.1e}"
        )
        assert rms < ACCURACY, (name, rms)


if __name__ == "__main__":
    main()
