"""torchpme.torchsim: a torch-sim model of torchpme's batched calculators."""

import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim")
ase = pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from torch_sim.models.soft_sphere import SoftSphereModel  # noqa: E402

from torchpme import (  # noqa: E402
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
)
from torchpme.neighbors import compute_neighbors, neighbor_pairs  # noqa: E402
from torchpme.prefactors import eV_A  # noqa: E402
from torchpme.torchsim import SumModel, TorchPMEModel  # noqa: E402

DTYPE = torch.float64
CHARGES = {11: 1.0, 17: -1.0, 55: 1.0, 12: 2.0, 8: -2.0}
CUTOFF = 4.5
SMEARING = 0.9


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small systems: one thread is much faster than several on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _calculator(kind: str):
    potential = CoulombPotential(smearing=SMEARING, prefactor=eV_A)
    if kind == "ewald":
        calculator = EwaldCalculator(potential, lr_wavelength=0.6)
    elif kind == "pme":
        calculator = PMECalculator(potential, mesh_spacing=0.3)
    else:
        calculator = P3MCalculator(potential, mesh_spacing=0.3)
    return calculator.to(DTYPE)


def _crystals():
    """Four small ionic crystals of different sizes and shapes."""
    rng = np.random.default_rng(0)
    salt = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    salt.positions += 0.1 * rng.standard_normal(salt.positions.shape)
    cscl = bulk("CsCl", "cesiumchloride", a=4.12)
    cscl.positions += 0.05 * rng.standard_normal(cscl.positions.shape)
    cell = np.diag([4.3, 4.9, 5.3]) + 0.6 * rng.uniform(-1, 1, (3, 3))
    triclinic = Atoms(
        "MgMgOONaCl",
        scaled_positions=rng.uniform(0, 1, (6, 3)),
        cell=cell,
        pbc=True,
    )
    # keep the random ions apart: a lattice of 6 sites, shuffled a little
    triclinic.set_scaled_positions(
        np.array(
            [
                [0, 0, 0],
                [0.5, 0.5, 0],
                [0.5, 0, 0.5],
                [0, 0.5, 0.5],
                [0.5, 0.5, 0.5],
                [0, 0, 0.5],
            ]
        )
        + 0.03 * rng.standard_normal((6, 3))
    )
    salt2 = bulk("NaCl", "rocksalt", a=5.7)
    salt2.positions += 0.1 * rng.standard_normal(salt2.positions.shape)
    return [salt, cscl, triclinic, salt2]


def _reference(calculator, atoms):
    """Energy, forces and stress of one system by a single-system call."""
    positions = torch.tensor(atoms.positions, dtype=DTYPE, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, dtype=DTYPE, requires_grad=True)
    charges = torch.tensor([CHARGES[z] for z in atoms.numbers], dtype=DTYPE).unsqueeze(
        -1
    )
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    energy = calculator.energy(charges, cell, positions, indices, distances)
    grad_r, grad_h = torch.autograd.grad(energy, [positions, cell])
    virial = positions.detach().T @ grad_r + cell.detach().T @ grad_h
    stress = virial / torch.abs(torch.linalg.det(cell.detach()))
    return energy.detach(), -grad_r, stress


@pytest.mark.parametrize("kind", ["ewald", "pme", "p3m"])
def test_batch_equals_single_systems(kind):
    calculator = _calculator(kind)
    model = TorchPMEModel(calculator, CHARGES, cutoff=CUTOFF)
    crystals = _crystals()
    state = ts.io.atoms_to_state(crystals, "cpu", DTYPE)
    positions, cell = state.positions.clone(), state.cell.clone()
    out = model(state)
    # the model leaves the state alone
    assert torch.equal(state.positions, positions)
    assert torch.equal(state.cell, cell)
    assert out["energy"].shape == (4,)
    assert out["forces"].shape == (state.n_atoms, 3)
    assert out["stress"].shape == (4, 3, 3)
    start = 0
    for system, atoms in enumerate(crystals):
        energy, forces, stress = _reference(calculator, atoms)
        end = start + len(atoms)
        torch.testing.assert_close(out["energy"][system], energy, rtol=0, atol=1e-10)
        torch.testing.assert_close(out["forces"][start:end], forces, rtol=0, atol=1e-10)
        torch.testing.assert_close(out["stress"][system], stress, rtol=0, atol=1e-10)
        start = end


def test_stress_is_strain_derivative():
    """σ = (1/V) ∂E/∂ε against central differences, all nine components."""
    model = TorchPMEModel(_calculator("ewald"), CHARGES, cutoff=CUTOFF)
    atoms = _crystals()[2]  # triclinic
    stress = model(ts.io.atoms_to_state(atoms, "cpu", DTYPE))["stress"][0]
    h = 1e-5
    numeric = torch.zeros(3, 3, dtype=DTYPE)
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                deformation = np.eye(3)
                deformation[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ deformation)
                strained.positions = atoms.positions @ deformation
                state = ts.io.atoms_to_state(strained, "cpu", DTYPE)
                energies.append(model(state)["energy"][0].item())
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h)
    numeric /= atoms.get_volume()
    torch.testing.assert_close(stress, numeric, rtol=0, atol=1e-7)
    assert torch.allclose(stress, stress.T, atol=1e-10)
    # the sign of ASE and torch-sim (its get_pressure: P = -tr(σ)/3): the Coulomb
    # energy of rock salt, -α k/d, falls under compression, so σ_ii > 0 (a
    # negative pressure pulling the cell in)
    salt = ts.io.atoms_to_state(bulk("NaCl", "rocksalt", a=5.64), "cpu", DTYPE)
    assert torch.all(model(salt)["stress"][0].diagonal() > 0)


def test_clusters_and_bare_calculator():
    """pbc=False: the open-boundary mesh of PME equals the bare Coulomb sum."""
    rng = np.random.default_rng(3)
    clusters = [
        Atoms("NaClNaCl", positions=rng.uniform(0, 4, (4, 3)), pbc=False),
        Atoms("MgOO", positions=rng.uniform(0, 4, (3, 3)), pbc=False),
    ]
    state = ts.io.atoms_to_state(clusters, "cpu", DTYPE)
    assert state.pbc is False
    bare = TorchPMEModel(
        Calculator(CoulombPotential(prefactor=eV_A)).to(DTYPE), CHARGES, cutoff=20.0
    )
    mesh = TorchPMEModel(
        PMECalculator(
            CoulombPotential(smearing=0.6, prefactor=eV_A), mesh_spacing=0.15
        ).to(DTYPE),
        CHARGES,
        cutoff=3.0,
    )
    exact, approximate = bare(state), mesh(state)
    torch.testing.assert_close(
        exact["energy"], approximate["energy"], atol=1e-3, rtol=2e-4
    )
    torch.testing.assert_close(
        exact["forces"], approximate["forces"], atol=3e-2, rtol=0
    )
    assert torch.all(exact["stress"] == 0)
    # the direct sum by hand
    for system, atoms in enumerate(clusters):
        q = np.array([CHARGES[z] for z in atoms.numbers])
        d = atoms.get_all_distances()
        iu = np.triu_indices(len(atoms), 1)
        energy = eV_A * np.sum(q[iu[0]] * q[iu[1]] / d[iu])
        assert abs(exact["energy"][system].item() - energy) < 1e-10


def test_callable_charges_and_sum_model():
    """Per-atom charges from a callable; the sum with a torch-sim model."""
    calculator = _calculator("ewald")

    def charges(state):
        table = torch.zeros(100, dtype=DTYPE)
        for z, q in CHARGES.items():
            table[z] = q
        return table[state.atomic_numbers]

    state = ts.io.atoms_to_state(_crystals(), "cpu", DTYPE)
    by_table = TorchPMEModel(calculator, CHARGES, cutoff=CUTOFF)(state)
    by_callable = TorchPMEModel(calculator, charges, cutoff=CUTOFF)(state)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(by_table[key], by_callable[key], rtol=0, atol=1e-12)
    repulsion = SoftSphereModel(sigma=2.5, epsilon=5.0, dtype=DTYPE)
    total = SumModel(TorchPMEModel(calculator, CHARGES, cutoff=CUTOFF), repulsion)
    assert total.compute_forces and not total.compute_stress
    out, short = total(state), repulsion(state)
    torch.testing.assert_close(out["energy"], by_table["energy"] + short["energy"])
    torch.testing.assert_close(out["forces"], by_table["forces"] + short["forces"])
    with pytest.raises(ValueError, match="no entry"):
        TorchPMEModel(calculator, {11: 1.0}, cutoff=CUTOFF)(state)


class _Repulsion(ts.models.interface.ModelInterface):
    """Soft-sphere repulsion ``E = ε Σ_pairs (1 − r/σ)³`` for ``r < σ`` (C², so
    velocity Verlet conserves its energy); forces and stress (``(1/V) ∂E/∂ε``) by
    autograd.

    Written here because torch-sim 0.3.0's ``SoftSphereModel`` and
    ``LennardJonesModel`` return twice ``−∂E/∂r`` as forces (and the soft
    spheres' stress has the opposite sign)."""

    def __init__(self, sigma: float, epsilon: float):
        super().__init__()
        self.sigma, self.epsilon = sigma, epsilon
        self._device, self._dtype = torch.device("cpu"), DTYPE
        self._compute_forces, self._compute_stress = True, True

    def forward(self, state, **kwargs):
        positions = state.positions.detach().requires_grad_(True)
        strain = torch.zeros(state.n_systems, 3, 3, dtype=DTYPE, requires_grad=True)
        energies = []
        with torch.enable_grad():
            deformation = torch.eye(3, dtype=DTYPE) + strain
            cells = state.row_vector_cell @ deformation
            for system in range(state.n_systems):
                atoms = torch.nonzero(state.system_idx == system).squeeze(1)
                r = positions[atoms] @ deformation[system]
                pairs, shifts = neighbor_pairs(
                    r.detach(), cells[system].detach(), self.sigma
                )
                vectors = (
                    r[pairs[:, 1]] - r[pairs[:, 0]] + shifts.to(DTYPE) @ cells[system]
                )
                distance = torch.linalg.norm(vectors, dim=1)
                energies.append(self.epsilon * ((1 - distance / self.sigma) ** 3).sum())
            energy = torch.stack(energies)
            grad_r, grad_e = torch.autograd.grad(energy.sum(), [positions, strain])
        volumes = torch.linalg.det(state.row_vector_cell).abs().view(-1, 1, 1)
        return {
            "energy": energy.detach(),
            "forces": -grad_r,
            "stress": grad_e / volumes,
        }


SIGMA, EPSILON = 3.3, 27.0


def _salt_model(kind="ewald"):
    """Coulomb + nearest-neighbour repulsion: a stable rock salt (a ≈ 5.6 Å)."""
    coulomb = TorchPMEModel(_calculator(kind), CHARGES, cutoff=CUTOFF)
    return SumModel(coulomb, _Repulsion(sigma=SIGMA, epsilon=EPSILON)), coulomb


def _ase_calculator():
    """Our ASE calculator with the Ewald parameters of the torch-sim model."""
    from torchpme.ase import TorchPMECalculator

    return TorchPMECalculator(
        charges={"Na": 1.0, "Cl": -1.0},
        method="ewald",
        cutoff=CUTOFF,
        smearing=SMEARING,
        params={"lr_wavelength": 0.6},
        accuracy=1e-4,
    )


def test_nve_conserves_energy_and_matches_ase():
    from ase.units import fs, kB

    model, coulomb = _salt_model()
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    state = ts.io.atoms_to_state(atoms, "cpu", DTYPE)
    dt = torch.tensor(2.0 * fs, dtype=DTYPE)
    kT = torch.tensor(600 * kB, dtype=DTYPE)
    init, step = ts.nve(model, dt=dt, kT=kT, seed=1)
    state = init(state)
    ase_calc = _ase_calculator()
    totals = []
    for n in range(150):  # 300 fs
        kinetic = ts.calc_kinetic_energy(
            masses=state.masses, momenta=state.momenta, system_idx=state.system_idx
        )
        totals.append((state.energy + kinetic).item())
        if n % 75 == 0:  # the Coulomb part against the ASE calculator
            snapshot = ts.io.state_to_atoms(state)[0]
            snapshot.calc = ase_calc
            ours = coulomb(state)
            assert abs(snapshot.get_potential_energy() - ours["energy"].item()) < 1e-9
            np.testing.assert_allclose(
                snapshot.get_forces(), ours["forces"].numpy(), atol=1e-9
            )
        state = step(state, dt=dt)
    totals = np.array(totals)
    # velocity Verlet at 2 fs, 8 ions at 600 K (kinetic energy ≈ 0.6-0.8 eV): the
    # total fluctuates by 3e-3 eV at most (7e-4 eV at 1 fs), 0.4 % of the kinetic
    drift = np.max(np.abs(totals - totals[0]))
    assert drift < 5e-3, drift
    # the crystal stayed a crystal
    assert torch.all(torch.isfinite(state.positions))


def test_fire_relaxes_a_batch():
    rng = np.random.default_rng(7)
    crystals = []
    for a in (5.5, 5.7):
        atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
        atoms.positions += 0.15 * rng.standard_normal(atoms.positions.shape)
        crystals.append(atoms)
    model, _ = _salt_model("pme")
    state = ts.io.atoms_to_state(crystals, "cpu", DTYPE)
    init, step = ts.optimizers.fire(model)
    state = init(state)
    first = ts.quantities.systemwise_max_force(state)
    assert torch.all(first > 0.5)
    for _ in range(200):
        state = step(state)
        if torch.all(ts.quantities.systemwise_max_force(state) < 1e-3):
            break
    assert torch.all(ts.quantities.systemwise_max_force(state) < 1e-3)


def test_cell_relaxation_uses_the_stress():
    """unit_cell_fire (positions and cells) of two strained crystals: zero forces
    and stress at the end, at the lattice constant of the analytic energy per ion
    pair, ``-α k/d + 6 ε (1 - d/σ)³`` (α: Madelung's constant)."""
    rng = np.random.default_rng(11)
    crystals = []
    for a in (5.4, 5.9):
        atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
        atoms.set_cell(
            atoms.cell.array @ (np.eye(3) + 0.02 * rng.uniform(-1, 1, (3, 3))),
            scale_atoms=True,
        )
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        crystals.append(atoms)
    model, _ = _salt_model()
    assert model.compute_stress
    state = ts.io.atoms_to_state(crystals, "cpu", DTYPE)
    init, step = ts.optimizers.unit_cell_fire(model)
    state = init(state)
    for _ in range(400):
        state = step(state)
        forces = ts.quantities.systemwise_max_force(state)
        stress = state.stress.abs().amax(dim=(1, 2))
        if torch.all(forces < 1e-3) and torch.all(stress < 1e-5):
            break
    assert torch.all(forces < 1e-3), forces
    assert torch.all(stress < 1e-5), stress
    madelung = 1.747564594633
    low, high = 2.5, SIGMA
    for _ in range(60):  # bisection of dE/dd = 0
        d = 0.5 * (low + high)
        slope = madelung * eV_A / d**2 - 18 * EPSILON / SIGMA * (1 - d / SIGMA) ** 2
        low, high = (low, d) if slope > 0 else (d, high)
    volumes = torch.linalg.det(state.cell).abs()
    expected = torch.full_like(volumes, (2 * d) ** 3)
    torch.testing.assert_close(volumes, expected, rtol=1e-4, atol=0)


def test_validate_model_outputs():
    """torch-sim's own conformance check (silicon and iron with ±1 charges)."""
    from torch_sim.models.interface import validate_model_outputs

    def alternating(state):
        signs = 1.0 - 2.0 * (torch.arange(state.n_atoms) % 2)
        return signs.to(DTYPE)

    model = TorchPMEModel(_calculator("ewald"), alternating, cutoff=CUTOFF)
    validate_model_outputs(model, torch.device("cpu"), DTYPE)


def test_nve_steps_match_ase_velocity_verlet():
    """Twenty 2 fs steps of torch-sim's NVE with the Coulomb model alone follow
    ASE's VelocityVerlet with torchpme's ASE calculator (same parameters)."""
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs, kB

    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.positions += 0.05 * np.random.default_rng(5).standard_normal((8, 3))
    coulomb = TorchPMEModel(_calculator("ewald"), CHARGES, cutoff=CUTOFF)
    dt = torch.tensor(2.0 * fs, dtype=DTYPE)
    init, step = ts.nve(coulomb, dt=dt, kT=torch.tensor(300 * kB, dtype=DTYPE), seed=2)
    state = init(ts.io.atoms_to_state(atoms, "cpu", DTYPE))
    atoms.set_momenta(state.momenta.numpy())
    np.testing.assert_allclose(atoms.get_masses(), state.masses.numpy())
    atoms.calc = _ase_calculator()
    dynamics = VelocityVerlet(atoms, timestep=2.0 * fs)
    for _ in range(20):
        state = step(state, dt=dt)
        dynamics.run(1)
    # torch-sim wraps the positions into the cell, ASE does not
    shift = (state.positions.numpy() - atoms.positions) @ np.linalg.inv(atoms.cell)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    np.testing.assert_allclose(state.momenta.numpy(), atoms.get_momenta(), atol=1e-9)
    assert abs(state.energy.item() - atoms.get_potential_energy()) < 1e-9


def test_docstring_examples():
    import doctest

    import torchpme.torchsim

    result = doctest.testmod(
        torchpme.torchsim, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0
    assert result.failed == 0
