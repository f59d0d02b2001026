"""Work estimated before work, coincident atoms and slabs without vacuum.

Each refusal must come before any allocation (fast, with a ValueError naming the
argument); legitimate inputs must pass the same estimates.
"""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import torchpme
from torchpme import CoulombPotential, EwaldCalculator, PMECalculator
from torchpme._cli import engine
from torchpme._cli.structures import NACL_LATTICE, rocksalt
from torchpme.neighbors import compute_neighbors, has_vesin, neighbor_pairs

BACKENDS = ["torch", "vesin"] if has_vesin() else ["torch"]
FAST = 10.0  # seconds: an estimate, never a search or an allocation


def _rocksalt(repeat=1, scale=1.0):
    atoms = rocksalt(repeat)
    positions = torch.tensor(atoms.positions * scale, dtype=torch.float64)
    cell = torch.tensor(atoms.cell[:] * scale, dtype=torch.float64)
    charges = torch.tensor(atoms.get_initial_charges(), dtype=torch.float64)
    return positions, cell, charges.reshape(-1, 1)


@pytest.fixture
def workload(monkeypatch):
    """The limits module with a fixed 8 GiB budget, whatever this machine has."""
    from torchpme._core import workload

    monkeypatch.delenv("TORCHPME_MEMORY_LIMIT", raising=False)
    monkeypatch.setitem(workload.LIMITS, "memory_bytes", float(8 << 30))
    return workload


def _refused(call, argument):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"`{argument}` must be") as info:
        call()
    assert time.perf_counter() - start < FAST
    return str(info.value)


# -- item 2: neighbour lists, meshes and k-vectors estimated before the work ------

# run in a child process: on a build without the estimate the first hangs in the
# neighbour search and the second ends in a segmentation fault
_CHILD = """
import json, time, torch
from torchpme._cli.structures import rocksalt
from torchpme.neighbors import compute_neighbors
atoms = rocksalt(1)
scale = 1e-3 / atoms.cell[0, 0]
cases = {
    "tiny cell": (torch.tensor(atoms.positions * scale), torch.tensor(atoms.cell[:] * scale)),
    "100k atoms in 10 A": (torch.rand(100000, 3, dtype=torch.float64) * 10,
                           10 * torch.eye(3, dtype=torch.float64)),
}
result = {}
for name, (positions, cell) in cases.items():
    start = time.perf_counter()
    try:
        compute_neighbors(positions, cell, 5.0)
        result[name] = "accepted"
    except ValueError as error:
        result[name] = str(error)
    result[name + " seconds"] = time.perf_counter() - start
print(json.dumps(result))
"""


@pytest.mark.slow
def test_degenerate_neighbour_searches_are_refused_in_a_child_process():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tiny cell"].startswith("`cutoff` must be")
    assert result["100k atoms in 10 A"].startswith("`positions` must be")
    assert "pairs" in result["tiny cell"]
    assert result["tiny cell seconds"] < FAST
    assert result["100k atoms in 10 A seconds"] < FAST


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_cell_refused_before_the_search(workload, backend):
    positions, cell, _ = _rocksalt(scale=1e-3 / NACL_LATTICE)
    text = _refused(
        lambda: compute_neighbors(positions, cell, 5.0, backend=backend), "cutoff"
    )
    assert "memory budget of 8.59 GB" in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_cutoff_on_two_atoms_refused(workload, backend):
    half = NACL_LATTICE / 2
    cell = torch.tensor([[0, half, half], [half, 0, half], [half, half, 0]])
    positions = torch.tensor([[0.0, 0.0, 0.0], [half, half, half]])
    _refused(lambda: neighbor_pairs(positions, cell, 1000.0, backend=backend), "cutoff")


def test_brute_force_work_limit(workload, monkeypatch):
    monkeypatch.setitem(workload.LIMITS, "brute_force_candidates", 1e4)
    positions, cell, _ = _rocksalt(2)
    text = _refused(
        lambda: neighbor_pairs(positions, cell, 3.0, backend="torch"), "positions"
    )
    assert "vesin" in text


def test_pme_mesh_spacing_refused():
    positions, cell, charges = _rocksalt()
    calculator = PMECalculator(CoulombPotential(smearing=1.0), mesh_spacing=1e-3)
    indices, distances = compute_neighbors(positions, cell, 4.0)
    text = _refused(
        lambda: calculator(charges, cell, positions, indices, distances),
        "mesh_spacing",
    )
    assert "16384x16384x16384" in text


def test_fixed_mesh_refused():
    _refused(
        lambda: PMECalculator(
            CoulombPotential(smearing=1.0), 1.0, fixed_mesh=[100000] * 3
        ),
        "fixed_mesh",
    )


def test_ewald_lr_wavelength_refused():
    positions, cell, charges = _rocksalt()
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=1e-3)
    indices, distances = compute_neighbors(positions, cell, 4.0)
    _refused(
        lambda: calculator(charges, cell, positions, indices, distances),
        "lr_wavelength",
    )


def test_ewald_work_limit_counts_kvectors_times_atoms(workload, monkeypatch):
    from torchpme._core import kspace

    lengths = [10.0, 10.0, 10.0]
    assert kspace.ewald_size(lengths, 0.5, 1000) == [20, 20, 20]
    monkeypatch.setitem(workload.LIMITS, "kvector_atom_products", 20**3 * 999)
    _refused(lambda: kspace.ewald_size(lengths, 0.5, 1000), "lr_wavelength")
    assert kspace.ewald_size(lengths, 0.5, 999) == [20, 20, 20]


@pytest.mark.parametrize("dipolar", [False, True], ids=["charges", "dipoles"])
def test_ewald_calculators_count_their_atoms(workload, monkeypatch, dipolar):
    from torchpme import CalculatorDipole, PotentialDipole

    positions, cell, charges = _rocksalt()
    indices, distances = compute_neighbors(positions, cell, 4.0)
    # a k-set of 8³ for 8 atoms: refused with one atom fewer allowed
    monkeypatch.setitem(workload.LIMITS, "kvector_atom_products", 8**3 * 8 - 1)
    if dipolar:
        calculator = CalculatorDipole(
            PotentialDipole(smearing=1.0), lr_wavelength=cell[0, 0].item() / 8
        )
        vectors = positions[indices[:, 1]] - positions[indices[:, 0]]

        def call():
            return calculator(charges.expand(-1, 3), cell, positions, indices, vectors)
    else:
        calculator = EwaldCalculator(
            CoulombPotential(smearing=1.0), lr_wavelength=cell[0, 0].item() / 8
        )

        def call():
            return calculator(charges, cell, positions, indices, distances)

    _refused(call, "lr_wavelength")


def test_pair_estimate_matches_an_independent_count():
    """Random atoms in a box: the estimate is the mean count; a thin cell: the
    images of each atom along its short axis dominate."""
    generator = np.random.default_rng(0)
    from torchpme._core.workload import estimate_pairs

    box = 12.0
    points = generator.uniform(0, box, size=(300, 3))
    cutoff = 4.0
    difference = points[None, :, :] - points[:, None, :]
    count = 0
    for shift in np.array(np.meshgrid(*[[-1, 0, 1]] * 3)).reshape(3, -1).T:
        distance = np.linalg.norm(difference + shift * box, axis=-1)
        count += int((distance < cutoff).sum()) - (
            len(points) if not shift.any() else 0
        )
    estimate = estimate_pairs(
        torch.tensor(points),
        box * torch.eye(3, dtype=torch.float64),
        cutoff,
        [True] * 3,
    )
    assert estimate == pytest.approx(count / 2, rel=0.1)

    # one atom, cell 0.01 x 20 x 20: images at multiples of 0.01 along x
    thin = torch.diag(torch.tensor([0.01, 20.0, 20.0], dtype=torch.float64))
    estimate = estimate_pairs(
        torch.zeros(1, 3, dtype=torch.float64), thin, 1.0, [True] * 3
    )
    assert estimate == pytest.approx(100, rel=0.05)  # ±1..±100 along x, halved


def test_legitimate_inputs_pass_the_estimates(workload):
    """A 4096-ion rock-salt box (45 Å), cutoff 10 Å, mesh spacing 0.5 Å, Ewald
    λ = 1 Å: estimates only, no run."""
    from torchpme._core import kspace

    positions, cell, _ = _rocksalt(8)
    assert positions.shape[0] == 4096
    pairs = workload.check_neighbor_list(positions, cell, 10.0, [True] * 3, False)
    # 4096 ions at 22.4 Å³ each: 4096 · (4/3)π 10³ / 22.4 / 2 ≈ 3.8e5 pairs
    assert pairs == pytest.approx(4096 * 4 / 3 * math.pi * 1000 / 22.43 / 2, rel=0.01)
    lengths = torch.linalg.norm(cell, dim=1).tolist()
    assert kspace.mesh_size(lengths, 0.5) == [256, 256, 256]
    assert kspace.ewald_size(lengths, 1.0, 4096) == [46, 46, 46]
    engine.check_periodic([True] * 3, cell, positions)
    # spacing 0.1 Å on this box is 1024³ points (≈ 26 GB), within a 64 GB budget
    workload.LIMITS["memory_bytes"] = 64e9
    assert kspace.mesh_size(lengths, 0.1) == [1024, 1024, 1024]


def test_memory_budget_from_the_environment(workload, monkeypatch):
    monkeypatch.setenv("TORCHPME_MEMORY_LIMIT", "2G")
    assert workload.memory_limit() == 2 << 30
    monkeypatch.setenv("TORCHPME_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="`TORCHPME_MEMORY_LIMIT` must be"):
        workload.memory_limit()
    monkeypatch.delenv("TORCHPME_MEMORY_LIMIT")
    monkeypatch.setitem(workload.LIMITS, "memory_bytes", 0.0)
    assert 0 < workload.memory_limit() < workload._physical_memory()


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        (1e-3 / NACL_LATTICE, "Å³ per atom"),
        (torch.diag(torch.tensor([0.3, 40.0, 40.0], dtype=torch.float64)), "0.3 Å"),
    ],
    ids=["tiny", "thin"],
)
def test_front_door_refuses_cells_denser_than_matter(cell, text):
    positions, nacl, _ = _rocksalt()
    if isinstance(cell, float):
        positions, cell = positions * cell, nacl * cell
    message = _refused(
        lambda: engine.check_periodic([True] * 3, cell, positions), "cell"
    )
    assert text in message
    # the same positions and a cell in Å pass
    engine.check_periodic([True] * 3, nacl, _rocksalt()[0])


# -- item 3: coincident atoms -----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("offset", "shift"), [(0, "[0, 0, 0]"), (1, "[-1, 0, 0]")], ids=["site", "image"]
)
def test_coincident_atoms_refused(backend, offset, shift):
    positions, cell, _ = _rocksalt()
    positions[3] = positions[0] + offset * cell[0]
    for search in (compute_neighbors, neighbor_pairs):
        text = _refused(
            lambda search=search: search(positions, cell, 4.0, backend=backend),
            "positions",
        )
        assert "atoms 0 and 3" in text
        assert f"image shift {shift}" in text
    # 1e-3 apart is close but legal
    positions[3, 1] += 1e-3
    compute_neighbors(positions, cell, 4.0, backend=backend)


def test_calculator_value_checks_refuse_coincident_pairs():
    positions, cell, charges = _rocksalt()
    indices = torch.tensor([[0, 1], [2, 3]])
    distances = torch.tensor([2.82, 0.0], dtype=torch.float64)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=1.0)
    calculator(charges, cell, positions, indices, distances)  # opt-in checks only
    torchpme.set_value_checks(True)
    try:
        text = _refused(
            lambda: calculator(charges, cell, positions, indices, distances),
            "neighbor_distances",
        )
        assert "atoms 2 and 3" in text
        # a masked padding pair at distance 0 is not a pair
        mask = torch.tensor([True, False])
        calculator(charges, cell, positions, indices, distances, pair_mask=mask)
    finally:
        torchpme.set_value_checks(False)


def test_front_door_refuses_coincident_atoms_of_an_open_system():
    positions, _, _ = _rocksalt()
    positions[5] = positions[2]
    text = _refused(
        lambda: engine.check_periodic([False] * 3, torch.zeros(3, 3), positions),
        "positions",
    )
    assert "atoms 2 and 5" in text


def test_front_door_refuses_a_direct_sum_beyond_the_budget(workload, monkeypatch):
    monkeypatch.setitem(workload.LIMITS, "memory_bytes", 1e6)
    positions = torch.rand(1000, 3, dtype=torch.float64) * 100
    _refused(
        lambda: engine.check_periodic([False] * 3, torch.zeros(3, 3), positions),
        "positions",
    )


# -- item 4: slabs without vacuum -------------------------------------------------

SLAB = [True, True, False]


def _slab_cell(cell, height):
    cell = cell.clone()
    cell[2, 2] = height
    return cell


def test_front_door_refuses_a_slab_without_vacuum_for_ewald():
    """Ewald's Yeh–Berkowitz correction needs the vacuum; the mesh methods
    compute the slab exactly and take the cell as it is."""
    positions, cell, _ = _rocksalt(2)  # 64 ions, 11.28 Å, layers 0 … 8.46 Å
    text = _refused(
        lambda: engine.check_periodic(SLAB, cell, positions, "ewald"), "cell"
    )
    for number in ("8.46 thick", "gap 2.82", "25.38"):
        assert number in text
    engine.check_periodic(SLAB, _slab_cell(cell, 25.4), positions, "ewald")
    engine.check_periodic(SLAB, cell, method="ewald")  # without positions
    for method in ("auto", "pme", "p3m"):
        engine.check_periodic(SLAB, cell, positions, method)


def test_calculator_value_checks_refuse_a_slab_without_vacuum():
    positions, cell, charges = _rocksalt()
    periodic = torch.tensor(SLAB)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=1.0)
    indices, distances = compute_neighbors(positions, cell, 4.0, SLAB)
    torchpme.set_value_checks(True)
    try:
        _refused(
            lambda: calculator(charges, cell, positions, indices, distances, periodic),
            "cell",
        )
        wide = _slab_cell(cell, 2.82 + 1.5 * NACL_LATTICE)
        calculator(charges, wide, positions, indices, distances, periodic)
    finally:
        torchpme.set_value_checks(False)


def _slab_energy(height):
    """Energy of two rock-salt layers (8 ions, 5.64 Å in-plane) in a cell of the
    given height, with the slab correction."""
    positions, cell, charges = _rocksalt()
    keep = positions[:, 2] < 3.0
    positions, charges = positions[keep], charges[keep]
    cell = _slab_cell(cell, height)
    calculator = EwaldCalculator(CoulombPotential(smearing=1.0), lr_wavelength=0.3)
    indices, distances = compute_neighbors(positions, cell, 10.0, SLAB)
    potentials = calculator(
        charges, cell, positions, indices, distances, torch.tensor(SLAB)
    )
    return float((charges * potentials).sum())


def test_the_refused_gaps_are_the_inaccurate_ones():
    """The corrected energy converges to the 2-D limit as the gap grows: the
    thinnest refused cell misses it by more than 1e-3, the thinnest accepted
    one by less than 1e-4 (relative)."""
    limit = _slab_energy(2.82 + 40.0)
    refused = 2.82 + 2.82  # gap as thick as the slab, below 1.5 · 5.64
    accepted = 2.82 + 1.5 * NACL_LATTICE
    assert abs(_slab_energy(refused) / limit - 1) > 1e-3
    assert abs(_slab_energy(accepted) / limit - 1) < 1e-4
