"""The front door (``torchpme._cli.frontdoor.compute``, shared by the CLI, and
the ASE calculator) takes ``atoms.pbc`` as it is: wires and slabs go to the
exact mesh sums without vacuum, clusters to the mesh when asked; the forces meet
the requested accuracy against independent NumPy references."""

import ase
import numpy as np
import pytest
import test_slabs
import test_wires
from test_clusters import _cluster, _direct

from torchpme._cli.frontdoor import compute
from torchpme.ase import TorchPMECalculator

ACCURACY = 1e-4  # e²/Å² with units="gaussian"


def _wire():
    positions, charges, cell, periodic = test_wires._wire(20, seed=4)
    system = (positions, charges, cell, periodic)
    return positions, charges[:, 0], cell, periodic, test_wires._reference(system)[1]


def _slab():
    # the cell's third row bounds the atoms: no vacuum at all
    positions, charges, cell, periodic = test_slabs._slab(20, "triclinic", seed=4)
    system = (positions, charges, cell, periodic)
    return positions, charges[:, 0], cell, periodic, test_slabs._reference(system)[1]


def _molecule():
    positions, charges = _cluster(30, neutral=True, seed=3, extent=6.0)
    cell = np.zeros((3, 3))
    return positions, charges[:, 0], cell, [False] * 3, _direct(positions, charges)[1]


SYSTEMS = {"wire": _wire, "slab": _slab, "cluster": _molecule}


def _rms(forces, expected):
    return float(np.sqrt(np.mean(np.sum((forces - expected) ** 2, axis=1))))


@pytest.mark.parametrize(
    ("system", "method"),
    [("wire", "auto"), ("wire", "pme"), ("slab", "auto"), ("cluster", "p3m")],
)
def test_compute_meets_the_accuracy(system, method):
    positions, charges, cell, periodic, expected = SYSTEMS[system]()
    atoms = ase.Atoms(positions=positions, cell=cell, pbc=periodic)
    result = compute(atoms, charges, method, accuracy=ACCURACY, units="gaussian")
    assert result.parameters.method == ("p3m" if method == "auto" else method)
    if system == "slab":
        assert result.parameters.params["slab_method"] == "exact"
    assert result.evaluation.stress is None
    assert _rms(result.evaluation.forces.numpy(), expected) < ACCURACY


def test_ase_wire_over_steps():
    """The calculator tunes once and follows the atoms: a displaced ion's
    forces still meet the accuracy against the reference."""
    positions, charges, cell, periodic, _ = _wire()
    atoms = ase.Atoms(positions=positions, cell=cell, pbc=periodic)
    atoms.calc = TorchPMECalculator(charges=charges, accuracy=ACCURACY, prefactor=1.0)
    atoms.get_forces()
    moved = positions.copy()
    moved[3] += [0.3, -0.2, 0.4]
    atoms.positions = moved
    forces = atoms.get_forces()
    system = (moved, charges[:, None], cell, periodic)
    assert atoms.calc.tunings == 1
    assert _rms(forces, test_wires._reference(system)[1]) < ACCURACY


def test_ewald_is_refused_for_wires_and_clusters():
    for build in (_wire, _molecule):
        positions, charges, cell, periodic, _ = build()
        atoms = ase.Atoms(positions=positions, cell=cell, pbc=periodic)
        with pytest.raises(ValueError, match=r"`method` must be 'auto', 'pme'"):
            compute(atoms, charges, "ewald", accuracy=ACCURACY, units="gaussian")


def test_auto_puts_large_clusters_on_the_mesh():
    from torchpme._cli import engine

    above = engine.AUTO_CLUSTER_MESH_ABOVE
    assert engine.resolve_method("auto", above, [False] * 3) == "direct"
    assert engine.resolve_method("auto", above + 1, [False] * 3) == "pme"
