"""Tuned parameters hold for a slab (periodic = [T, T, F], Yeh–Berkowitz correction).

Reference: the NumPy Ewald sum of tests/test_tuning_accuracy.py for the 3-D periodic
cell, plus the slab term written here from its definition: for a neutral slab with
total dipole ``M_z = Σ q_i z_i`` in a cell of volume ``V``, ``E_slab = 2π M_z² / V``;
per-atom potentials follow the library's convention ``V_i = ½ ∂E/∂q_i`` (so that
``E = Σ q_i V_i``), which with ``M₂ = Σ q_i z_i²`` gives ``(2π/V)(M_z z_i − M₂/2)``,
and the force gains ``−4π q_i M_z / V`` along z. Yeh & Berkowitz, J. Chem. Phys. 111, 3155 (1999),
doi:10.1063/1.479595.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from test_tuning_accuracy import ewald_reference, neighbor_list, random_ions

from torchpme import CoulombPotential, P3MCalculator, PMECalculator
from torchpme.tuning import tune_p3m, tune_pme


def slab_system():
    """64 random ions in a 12 x 12 x 8 Å layer of a cell 36 Å high."""
    positions, charges, _ = random_ions(np.diag([12.0, 12.0, 8.0]), seed=11)
    positions[:, 2] += 2.0
    return positions, charges, np.diag([12.0, 12.0, 36.0])


def slab_reference(positions, charges, cell):
    potentials, forces = ewald_reference(positions, charges, cell)
    volume = abs(np.linalg.det(cell))
    dipole = float(np.sum(charges * positions[:, 2]))
    second = float(np.sum(charges * positions[:, 2] ** 2))
    potentials = (
        potentials + 2 * math.pi * (dipole * positions[:, 2] - second / 2) / volume
    )
    forces = forces.copy()
    forces[:, 2] -= 4 * math.pi * charges * dipole / volume
    return potentials, forces


@pytest.mark.parametrize(
    ("method", "accuracy"),
    [
        pytest.param(
            "pme",
            1e-3,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known gap: potential RMS error 1.02e-3 for a 1e-3 target; the "
                "estimates assume a homogeneous density, a slab is 3.6x denser",
            ),
        ),
        ("pme", 1e-5),
        ("p3m", 1e-4),
    ],
    ids=["pme-1e-03", "pme-1e-05", "p3m-1e-04"],
)
def test_tuned_slab_meets_the_accuracy(method, accuracy):
    positions, charges, cell = slab_system()
    v_ref, f_ref = slab_reference(positions, charges, cell)
    cutoff = 5.0
    pairs, shifts = neighbor_list(positions, cell, cutoff)
    pos = torch.tensor(positions, dtype=torch.float64)
    q = torch.tensor(charges, dtype=torch.float64).reshape(-1, 1)
    cel = torch.tensor(cell, dtype=torch.float64)
    indices = torch.tensor(pairs)
    shift = torch.tensor(shifts, dtype=torch.float64)

    def distances(p):
        return torch.linalg.norm(
            p[indices[:, 1]] + shift @ cel - p[indices[:, 0]], dim=1
        )

    tune, build = {"pme": (tune_pme, PMECalculator), "p3m": (tune_p3m, P3MCalculator)}[
        method
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smearing, params, _ = tune(
            q, cel, pos, cutoff, indices, distances(pos), accuracy=accuracy
        )
    calculator = build(CoulombPotential(smearing=smearing), **params)
    pos.requires_grad_(True)
    periodic = torch.tensor([True, True, False])
    potentials = calculator(q, cel, pos, indices, distances(pos), periodic)
    forces = -torch.autograd.grad(torch.sum(q * potentials), pos)[0]
    v_error = math.sqrt(np.mean((potentials.detach().numpy()[:, 0] - v_ref) ** 2))
    f_error = math.sqrt(np.mean(np.sum((forces.numpy() - f_ref) ** 2, axis=1)))
    assert f_error <= accuracy, (params, f_error)
    assert v_error <= accuracy, (params, v_error)
