"""Point dipoles and induced polarisation through the ASE calculator
(``atoms.arrays["dipoles"]`` and ``["polarizabilities"]``): clusters against a
NumPy pair sum and a dense NumPy solve written here, crystals against the NumPy
multipolar Ewald sum of ``tests/reference_multipoles.py``, forces and stress
against finite differences of the energy, and the refusals."""

import numpy as np
import pytest
import torch

ase = pytest.importorskip("ase")
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from reference_multipoles import multipole_ewald  # noqa: E402

from torchpme._cli.multipoles import MOMENT_HEADROOM, MultipoleState  # noqa: E402
from torchpme.ase import TorchPMECalculator  # noqa: E402

EV_A = 14.399645478425667  # e²/(4πε₀) in eV·Å (CODATA), written out on purpose
THOLE = 0.39
SKEWED = np.array([[6.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, -0.8, 7.0]])
# a crystal tuned once for all its tests: the multipole tuner measures mesh
# errors on a proxy (seconds); an 8 Å cutoff keeps its meshes coarse
CRYSTAL_OPTIONS = {"accuracy": 1e-4, "cutoff": 8.0}


def _spread(n, box, seed, closest=1.8):
    """``n`` random positions in ``box`` no closer than ``closest``."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n:
        trial = rng.random(3) @ box
        if all(np.linalg.norm(trial - p) >= closest for p in positions):
            positions.append(trial)
    return np.array(positions)


def _atoms(n, periodic, seed, alpha=None):
    """``n`` atoms with neutral charges and dipoles of about 0.3 e·Å (and
    polarisabilities ``alpha`` times 0.5–1.5 Å³)."""
    rng = np.random.default_rng(seed)
    box = SKEWED if periodic else 7.0 * np.eye(3)
    charges = rng.normal(size=n)
    atoms = ase.Atoms(
        "H" * n,
        positions=_spread(n, box, seed),
        cell=SKEWED if periodic else None,
        pbc=periodic,
    )
    atoms.set_initial_charges(charges - charges.mean())
    atoms.arrays["dipoles"] = 0.3 * rng.normal(size=(n, 3))
    if alpha is not None:
        atoms.arrays["polarizabilities"] = alpha * rng.uniform(0.5, 1.5, n)
    return atoms


def _pairs(positions):
    """All pairs ``i < j`` and ``R = r_j − r_i``."""
    i, j = np.triu_indices(len(positions), 1)
    return i, j, positions[j] - positions[i]


def _pair_sum(positions, q, mu):
    """Energy and forces of charges and dipoles, bare pair sum (prefactor 1).

    With ``R = r_j − r_i``: ``q_i q_j/r + (q_j μ_i − q_i μ_j)·R/r³
    + [μ_i·μ_j r² − 3(μ_i·R)(μ_j·R)]/r⁵`` per pair.
    """
    i, j, vectors = _pairs(positions)
    r = np.linalg.norm(vectors, axis=1)[:, None]
    a = q[j, None] * mu[i] - q[i, None] * mu[j]
    mi_r = (mu[i] * vectors).sum(1, keepdims=True)
    mj_r = (mu[j] * vectors).sum(1, keepdims=True)
    mm = (mu[i] * mu[j]).sum(1, keepdims=True)
    qq = (q[i] * q[j])[:, None]
    ar = (a * vectors).sum(1, keepdims=True)
    energy = qq / r + ar / r**3 + (mm * r**2 - 3.0 * mi_r * mj_r) / r**5
    # ∂E/∂R, term by term
    gradient = (
        -qq * vectors / r**3
        + a / r**3
        - 3.0 * ar * vectors / r**5
        - 3.0 * mm * vectors / r**5
        - 3.0 * (mu[i] * mj_r + mu[j] * mi_r) / r**5
        + 15.0 * mi_r * mj_r * vectors / r**7
    )
    forces = np.zeros_like(positions)
    np.add.at(forces, i, gradient)  # R = r_j − r_i: F_i = +∂E/∂R
    np.add.at(forces, j, -gradient)
    return float(energy.sum()), forces


def _dense_induction(positions, q, mu, alpha, a):
    """Induced dipoles, permanent energy and polarisation energy (prefactor 1)
    of a cluster by the dense solve ``(α⁻¹ − T) μ = E⁰`` (``T`` Thole-damped
    with ``a``, undamped for None; ``E⁰`` undamped)."""
    n = len(positions)
    field = np.zeros((n, 3))
    matrix = np.diag(np.repeat(1.0 / alpha, 3))
    eye = np.eye(3)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            vector = positions[i] - positions[j]  # from source j to target i
            r = np.linalg.norm(vector)
            rr = np.outer(vector, vector)
            bare = (3.0 * rr - r**2 * eye) / r**5
            field[i] += q[j] * vector / r**3 + bare @ mu[j]
            u3 = np.inf if a is None else a * r**3 / np.sqrt(alpha[i] * alpha[j])
            lambda3 = 1.0 - np.exp(-u3)
            lambda5 = 1.0 - (1.0 + u3) * np.exp(-u3) if a is not None else 1.0
            damped = (3.0 * lambda5 * rr - lambda3 * r**2 * eye) / r**5
            matrix[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] -= damped
    induced = np.linalg.solve(matrix, field.reshape(-1)).reshape(n, 3)
    permanent, _ = _pair_sum(positions, q, mu)
    return induced, permanent, -0.5 * float((induced * field).sum())


def _energy_at(atoms, calc, index=None, axis=None, step=0.0, strain=None):
    copy = atoms.copy()
    if index is not None:
        copy.positions[index, axis] += step
    if strain is not None:
        copy.set_cell(np.asarray(copy.cell[:]) @ (np.eye(3) + strain), scale_atoms=True)
    copy.calc = calc
    return copy.get_potential_energy()


def _check_forces(atoms, calc, components, step, atol):
    forces = atoms.get_forces()
    for index, axis in components:
        plus = _energy_at(atoms, calc, index, axis, step)
        minus = _energy_at(atoms, calc, index, axis, -step)
        assert forces[index, axis] == pytest.approx(
            -(plus - minus) / (2 * step), abs=atol
        ), (index, axis)


def _check_stress(atoms, calc, voigt, step, atol):
    stress = atoms.get_stress()
    volume = atoms.get_volume()
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for component in voigt:
        a, b = pairs[component]
        strain = np.zeros((3, 3))
        strain[a, b] += 0.5 * step
        strain[b, a] += 0.5 * step
        plus = _energy_at(atoms, calc, strain=strain)
        minus = _energy_at(atoms, calc, strain=-strain)
        expected = (plus - minus) / (2 * step * volume)
        assert stress[component] == pytest.approx(expected, abs=atol), component


@pytest.fixture(scope="module")
def crystal_calculator():
    """One calculator, tuned on first use, shared by the crystal tests."""
    return TorchPMECalculator(**CRYSTAL_OPTIONS)


def test_cluster_equals_the_pair_sum():
    atoms = _atoms(10, False, seed=3)
    atoms.calc = TorchPMECalculator()
    energy, forces = _pair_sum(
        atoms.positions, atoms.get_initial_charges(), atoms.arrays["dipoles"]
    )
    assert atoms.get_potential_energy() == pytest.approx(EV_A * energy, rel=1e-10)
    scale = np.abs(forces).max() * EV_A
    np.testing.assert_allclose(atoms.get_forces(), EV_A * forces, atol=1e-10 * scale)
    assert atoms.calc.induced_dipoles is None
    assert atoms.calc.polarisation_iterations is None
    assert atoms.calc.estimated_error is None  # the bare sum is exact
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_zero_dipoles_equal_the_charge_path():
    atoms = _atoms(10, False, seed=5)
    del atoms.arrays["dipoles"]
    atoms.calc = TorchPMECalculator()
    plain = atoms.get_potential_energy()
    atoms.arrays["dipoles"] = np.zeros((len(atoms), 3))
    # a new array at the same positions is a change (ASE compares only its own)
    assert atoms.get_potential_energy() == pytest.approx(plain, rel=1e-12)
    assert atoms.calc.multipoles.tunings == 1
    atoms.arrays["dipoles"][0, 2] = 0.5
    assert atoms.get_potential_energy() != pytest.approx(plain, rel=1e-6)


def test_crystal_equals_the_ewald_reference(crystal_calculator):
    atoms = _atoms(12, True, seed=7)
    atoms.calc = crystal_calculator
    reference = multipole_ewald(
        atoms.positions,
        atoms.cell[:],
        atoms.get_initial_charges(),
        atoms.arrays["dipoles"],
    )
    error = atoms.get_forces() - EV_A * reference["forces"]
    accuracy = CRYSTAL_OPTIONS["accuracy"]
    assert np.sqrt((error**2).sum(axis=1).mean()) < accuracy
    # per atom, an energy error of at most the force accuracy times 1 Å
    energy = atoms.get_potential_energy()
    assert abs(energy - EV_A * reference["energy"]) < len(atoms) * accuracy
    assert 0.0 < crystal_calculator.estimated_error < accuracy


def test_crystal_forces_and_stress_are_derivatives(crystal_calculator):
    atoms = _atoms(12, True, seed=7)
    atoms.calc = crystal_calculator
    _check_forces(atoms, crystal_calculator, [(0, 0), (3, 1), (7, 2)], 1e-4, 1e-6)
    _check_stress(atoms, crystal_calculator, [0, 3, 5], 1e-5, 1e-9)


def test_polarised_crystal_forces_and_stress_are_derivatives(crystal_calculator):
    atoms = _atoms(12, True, seed=7, alpha=0.3)
    atoms.calc = crystal_calculator
    tunings = crystal_calculator.multipoles.tunings
    _check_forces(atoms, crystal_calculator, [(1, 0), (5, 2)], 1e-4, 1e-6)
    _check_stress(atoms, crystal_calculator, [2, 4], 1e-5, 1e-9)
    induced = crystal_calculator.induced_dipoles
    assert induced.shape == (12, 3) and np.abs(induced).max() > 1e-3
    # small polarisabilities stay within the tuning's headroom
    assert crystal_calculator.multipoles.tunings == max(tunings, 1)


def test_polarised_cluster_equals_the_dense_solve():
    atoms = _atoms(10, False, seed=11, alpha=1.0)
    atoms.calc = TorchPMECalculator(thole=THOLE)
    energy = atoms.get_potential_energy()
    q, mu = atoms.get_initial_charges(), atoms.arrays["dipoles"]
    alpha = atoms.arrays["polarizabilities"]
    induced, permanent, polarisation = _dense_induction(
        atoms.positions, q, mu, alpha, THOLE
    )
    scale = np.abs(induced).max()
    np.testing.assert_allclose(atoms.calc.induced_dipoles, induced, atol=1e-7 * scale)
    assert polarisation < 0.0
    assert energy == pytest.approx(EV_A * (permanent + polarisation), rel=1e-8)
    assert atoms.calc.polarisation_iterations > 0
    _check_forces(atoms, atoms.calc, [(0, 0), (4, 1), (9, 2)], 1e-4, 1e-6)


def test_without_thole_the_cluster_is_polarised_more():
    atoms = _atoms(10, False, seed=11, alpha=1.0)
    atoms.calc = TorchPMECalculator(thole=None)
    atoms.get_potential_energy()
    q, mu = atoms.get_initial_charges(), atoms.arrays["dipoles"]
    induced, _, _ = _dense_induction(
        atoms.positions, q, mu, atoms.arrays["polarizabilities"], None
    )
    scale = np.abs(induced).max()
    np.testing.assert_allclose(atoms.calc.induced_dipoles, induced, atol=1e-6 * scale)


def test_induced_dipoles_retune_a_crystal_once_and_warm_start():
    atoms = _atoms(12, True, seed=7, alpha=1.0)
    atoms.arrays["dipoles"][:] = 0.0  # tuned first for the charges alone
    atoms.calc = TorchPMECalculator(accuracy=1e-3, cutoff=10.0)
    atoms.get_potential_energy()
    assert atoms.calc.multipoles.tunings == 2  # again for the induced dipoles
    atoms.positions[0, 0] += 1e-3
    atoms.get_potential_energy()
    assert atoms.calc.multipoles.tunings == 2
    warm = atoms.calc.polarisation_iterations  # from the previous step's dipoles
    atoms.calc.multipoles._induced = None
    atoms.positions[0, 0] += 1e-12
    atoms.get_potential_energy()
    assert warm < atoms.calc.polarisation_iterations


def test_retuning_follows_the_cell_and_the_moments():
    state = MultipoleState(THOLE)

    class Options:
        retune_threshold = 0.05

    periodic = [True] * 3
    q, moments = torch.ones(4), torch.ones(4, 3)
    cell = torch.tensor(SKEWED)
    state._tuned_for = {"periodic": periodic, "n": 4, "cell": cell,
                        "q2": 1.0, "m2": 3.0}  # fmt: skip
    assert not state._stale(Options, periodic, q, moments, cell * 1.01)
    assert state._stale(Options, periodic, q, moments, cell * 1.1)
    assert state._stale(Options, [False] * 3, q, moments, cell)
    assert state._stale(Options, periodic, torch.ones(5), torch.ones(5, 3), cell)
    grown = moments * np.sqrt(1.01 * MOMENT_HEADROOM)
    assert not state._stale(Options, periodic, q, 0.5 * moments, cell)
    assert state._stale(Options, periodic, q, grown, cell)
    assert state._stale(Options, periodic, 1.2 * q, moments, cell)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("dipoles", np.zeros((12, 2)), r'atoms.arrays\["dipoles"\]` must be of shape'),
        ("dipoles", np.full((12, 3), np.nan), r'arrays\["dipoles"\]` must be finite'),
        ("polarizabilities", -np.ones(12), r'\["polarizabilities"\]` must be > 0'),
        ("polarizabilities", np.ones((12, 3)), r'\["polarizabilities"\]` must be of'),
        ("polarizabilities", np.full(12, np.inf), r'\["polarizabilities"\]` must be f'),
    ],
)
def test_bad_arrays_are_refused_before_tuning(name, value, match):
    atoms = _atoms(12, True, seed=7)
    atoms.arrays[name] = value
    atoms.calc = TorchPMECalculator(**CRYSTAL_OPTIONS)
    with pytest.raises(ValueError, match=match):
        atoms.get_potential_energy()
    assert atoms.calc.multipoles.tunings == 0


@pytest.mark.parametrize(
    ("options", "pbc", "match"),
    [
        ({}, [True, True, False], r"`atoms.pbc` must be all True or all False"),
        ({"qeq": {"H": (0.0, 5.0, 0.5)}}, False, r"`qeq` must be None with dipoles"),
        ({"method": "ewald"}, True, r"`method` must be one of"),
        ({"method": "pme"}, True, r"`method` must be one of \['auto', 'p3m'\]"),
        ({"method": "p3m"}, False, r"`method` must be one of \[.auto.\]"),
        ({"smearing": 1.0}, True, r"without smearing or params"),
    ],
)
def test_unsupported_combinations_are_refused(options, pbc, match):
    atoms = _atoms(12, True, seed=7)
    atoms.pbc = pbc
    atoms.calc = TorchPMECalculator(**options)
    with pytest.raises(ValueError, match=match):
        atoms.get_potential_energy()


@pytest.mark.parametrize("thole", [0.0, -1.0, float("nan"), "0.39"])
def test_bad_thole_is_refused(thole):
    with pytest.raises(ValueError, match="`thole` must be a finite number > 0"):
        TorchPMECalculator(thole=thole)
