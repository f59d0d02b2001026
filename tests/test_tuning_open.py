"""Tuned parameters hold for clusters, wires and slabs: ``tune_pme`` and
``tune_p3m`` with ``periodic``, measured against independent NumPy references
(the direct sum, the 1-D and 2-D Ewald sums of ``reference_wire.py`` and
``reference_slab.py``)."""

import warnings

import numpy as np
import open_systems
import pytest
import test_slabs
import test_wires
import torch
from test_clusters import _cluster, _direct

from torchpme import CoulombPotential, P3MCalculator, PMECalculator
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme

CUTOFF = 6.0
TUNERS = {"pme": (tune_pme, PMECalculator), "p3m": (tune_p3m, P3MCalculator)}


def _cluster_system():
    positions, charges = _cluster(40, neutral=True, seed=2, extent=6.0)
    return positions, charges, np.zeros((3, 3)), [False, False, False]


def _cluster_inputs(positions, charges, cell, periodic):
    r = torch.tensor(positions, requires_grad=True)
    i, j = torch.triu_indices(len(positions), len(positions), 1)
    pairs = torch.stack([i, j], 1)
    distances = torch.linalg.norm(r[j] - r[i], dim=1)
    return (
        torch.tensor(charges), torch.tensor(cell), r, pairs, distances,
        torch.tensor(periodic),
    )  # fmt: skip


def _cluster_forces(system):
    return _direct(system[0], system[1])[1]


GEOMETRIES = {
    "cluster": (_cluster_system, _cluster_inputs, _cluster_forces),
    "wire": (
        lambda: test_wires._wire(30, seed=2),
        open_systems.inputs,
        lambda system: test_wires._reference(system)[1],
    ),
    "slab": (
        lambda: test_slabs._slab(40, "triclinic", seed=2),
        open_systems.inputs,
        lambda system: test_slabs._reference(system)[1],
    ),
}


@pytest.mark.parametrize("accuracy", [1e-3, 1e-5])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("method", list(TUNERS))
def test_tuned_open_systems_meet_the_accuracy(method, geometry, accuracy):
    """The RMS force error of the tuned calculator, measured, is below the
    requested accuracy (slabs come back with ``slab_method="exact"``)."""
    build, inputs, reference = GEOMETRIES[geometry]
    system = build()
    q, cell, r, pairs, distances, periodic = inputs(*system)
    keep = distances.detach() <= CUTOFF
    pairs, distances = pairs[keep], distances[keep]
    tune, calculator_class = TUNERS[method]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "accuracy not met" warning
        smearing, params, _ = tune(
            q.detach(), cell, r.detach(), CUTOFF, pairs, distances.detach(),
            accuracy=accuracy, periodic=periodic,
        )  # fmt: skip
    assert ("slab_method" in params) == (geometry == "slab")
    calculator = calculator_class(CoulombPotential(smearing=smearing), **params)
    energy = calculator.energy(q, cell, r, pairs, distances, periodic=periodic)
    forces = -torch.autograd.grad(energy, r)[0].numpy()
    error = np.sqrt(np.mean(np.sum((forces - reference(system)) ** 2, axis=1)))
    assert error < accuracy


def test_open_tuning_refuses_what_cannot_run():
    positions, charges, cell, periodic = _cluster_system()
    q, cell, r, pairs, distances, periodic = _cluster_inputs(
        positions, charges, cell, periodic
    )
    arguments = (q, cell, r.detach(), CUTOFF, pairs, distances.detach())
    with pytest.raises(ValueError, match=r"`smooth_meshes`.*open"):
        tune_pme(*arguments, periodic=periodic, smooth_meshes=True)
    # Ewald has no open directions: its tuner takes no `periodic`
    with pytest.raises(TypeError):
        tune_ewald(*arguments, periodic=periodic)


def test_open_tuning_names_a_zero_periodic_row():
    q, cell, r, pairs, distances, periodic = open_systems.inputs(*test_wires._wire(6))
    flat = cell.clone()
    flat[2] = 0.0
    with pytest.raises(ValueError, match=r"`cell`.*non-zero periodic"):
        tune_pme(
            q.detach(), flat, r.detach(), CUTOFF, pairs, distances.detach(),
            periodic=periodic,
        )  # fmt: skip
