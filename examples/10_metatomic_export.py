"""Export a Coulomb + Born–Mayer model for LAMMPS through metatomic, check it in ASE.

metatomic (``metatomic-torch``) is the model format that LAMMPS's ``pair_style
metatomic`` (the metatensor fork of LAMMPS) and other engines load: a TorchScript
file holding an :class:`metatomic.torch.AtomisticModel`. This script

1. writes a small TorchScript-able ``torch.nn.Module`` whose ``"energy"`` output
   is the long-range Coulomb energy of fixed per-species charges (Na +1, Cl −1,
   held in the module) from :class:`torchpme.metatensor.P3MCalculator`, plus a
   short-range Born–Mayer repulsion ``A exp(−r/ρ)`` summed over the neighbour
   list the module asks the engine for (``requested_neighbor_lists()``);
2. wraps it in ``AtomisticModel`` (atomic types 11 and 17, lengths in Å, energies
   in eV, float64, CPU, interaction range = the neighbour-list cutoff) and saves
   it to a temporary ``model.pt``;
3. loads the file back with ``load_atomistic_model``, runs it through ASE with
   metatomic's ``MetatomicCalculator`` on a rattled rock-salt crystal, and checks
   the energy, forces and stress against :class:`torchpme.ase.TorchPMECalculator`
   (same P3M parameters) plus the same repulsion computed here with numpy. Both
   sides run the same sums, so they must agree to rounding: 1e-8 eV/Å in the
   forces, 1e-8 eV per ion in the energy, 1e-9 eV/Å³ in the stress (about 1e-14
   is measured). A converged Ewald sum checks the P3M parameters themselves to
   1e-5 eV/Å.

The saved file is what LAMMPS would load, with ``units metal`` and atom types 1
= Na, 2 = Cl::

    pair_style metatomic model.pt
    pair_coeff * * 11 17

These two lines are documentation only: no LAMMPS build is available here and
LAMMPS itself was not run. One caveat for LAMMPS: a reciprocal-space sum needs
the periodic cell's own atoms, each once. Where an engine hands the model local
atoms plus ghost copies and marks the local ones with ``selected_atoms`` (as
LAMMPS's domain decomposition does), this model stops with an error instead of
summing the ghost charges as if they were real ones; how a given LAMMPS run
builds the system was not checked here. The interaction range declared is the
real-space cutoff (what sizes an engine's ghost shell); metatomic suggests
``inf`` for models with an explicit long-range part.

Run: ``python examples/10_metatomic_export.py``
"""

import os
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from ase.build import bulk
from ase.neighborlist import neighbor_list
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
    load_atomistic_model,
)

import torchpme.metatensor
from torchpme import CoulombPotential
from torchpme.ase import TorchPMECalculator
from torchpme.prefactors import eV_A

try:  # metatomic-ase holds the calculator since metatomic-torch 0.1.x
    from metatomic_ase import MetatomicCalculator
except ImportError:  # older releases: the module inside metatomic-torch
    from metatomic.torch.ase_calculator import MetatomicCalculator

CUTOFF = 6.0  # Å: neighbour list, real-space Coulomb and Born–Mayer repulsion
SMEARING = 1.1  # Å: Gaussian smearing splitting the Coulomb sum
MESH_SPACING = 0.4  # Å
NODES = 5  # P3M interpolation order
CHARGES = {11: 1.0, 17: -1.0}  # atomic number -> charge (e)
BORN_A = 1250.0  # eV, one prefactor for every pair of ions (illustrative)
BORN_RHO = 0.317  # Å


class CoulombBornMayer(torch.nn.Module):
    """Energy of fixed charges (P3M) plus ``A exp(−r/ρ)`` for pairs closer than
    ``cutoff``; metatomic's model interface (``forward(systems, outputs,
    selected_atoms)``)."""

    def __init__(self, charges: Dict[int, float], cutoff: float):
        super().__init__()
        table = torch.zeros(max(charges) + 1, dtype=torch.float64)
        for atomic_type, charge in charges.items():
            table[atomic_type] = charge
        self.register_buffer("charge_table", table)
        self.cutoff = cutoff
        self.born_a = BORN_A
        self.born_rho = BORN_RHO
        self.coulomb = torchpme.metatensor.P3MCalculator(
            CoulombPotential(smearing=SMEARING, prefactor=eV_A),
            mesh_spacing=MESH_SPACING,
            interpolation_nodes=NODES,
            full_neighbor_list=False,
        )
        # a half list, pairs no farther than the cutoff (metatomic's convention)
        self.neighbor_options = NeighborListOptions(
            cutoff=cutoff, full_list=False, strict=True
        )

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_options]

    def _energy(self, system: System) -> torch.Tensor:
        neighbors = system.get_neighbor_list(self.neighbor_options)
        distances = torch.linalg.norm(neighbors.values, dim=1).squeeze(-1)
        # an engine may give pairs a little beyond the cutoff (a Verlet skin)
        keep = distances < self.cutoff
        if not bool(keep.all()):
            neighbors = TensorBlock(
                values=neighbors.values[keep],
                samples=Labels(neighbors.samples.names, neighbors.samples.values[keep]),
                components=neighbors.components,
                properties=neighbors.properties,
            )
            distances = distances[keep]

        # torchpme.metatensor reads the charges from the system's "charge" data:
        # a fresh System with the same (differentiable) positions and cell
        n_atoms = system.positions.shape[0]
        device = system.positions.device
        charges = self.charge_table[system.types].reshape(-1, 1)
        atoms = torch.arange(n_atoms, dtype=torch.int32, device=device)
        charge_block = TensorBlock(
            values=charges,
            samples=Labels(
                ["system", "atom"], torch.stack([torch.zeros_like(atoms), atoms], 1)
            ),
            components=[],
            properties=Labels(
                "charge", torch.zeros(1, 1, dtype=torch.int32, device=device)
            ),
        )
        charged = System(
            types=system.types,
            positions=system.positions,
            cell=system.cell,
            pbc=system.pbc,
        )
        charged.add_data(
            "charge",
            TensorMap(
                Labels("_", torch.zeros(1, 1, dtype=torch.int32, device=device)),
                [charge_block],
            ),
        )
        potentials = self.coulomb(charged, neighbors).block().values
        coulomb = (charges * potentials).sum()

        repulsion = (self.born_a * torch.exp(-distances / self.born_rho)).sum()
        return coulomb + repulsion

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        if "energy" not in outputs:
            return results
        if outputs["energy"].sample_kind != "system":
            raise ValueError("this model gives the energy per system only")
        if selected_atoms is not None:
            # under domain decomposition the system holds ghost copies of atoms:
            # the k-space sum would count their charges as real ones
            n_total = 0
            for system in systems:
                n_total += system.positions.shape[0]
            if len(selected_atoms) != n_total:
                raise ValueError(
                    "a k-space Coulomb model needs every atom of the periodic "
                    "cell and no ghost copies: selected_atoms is not supported"
                )

        energies: List[torch.Tensor] = []
        for system in systems:
            energies.append(self._energy(system))
        dtype = self.charge_table.dtype
        device = self.charge_table.device
        if len(systems) > 0:
            dtype = systems[0].positions.dtype
            device = systems[0].positions.device
        values = torch.stack(energies).reshape(-1, 1).to(dtype)
        block = TensorBlock(
            values=values,
            samples=Labels(
                "system",
                torch.arange(len(systems), dtype=torch.int32, device=device).reshape(
                    -1, 1
                ),
            ),
            components=[],
            properties=Labels(
                "energy", torch.zeros(1, 1, dtype=torch.int32, device=device)
            ),
        )
        results["energy"] = TensorMap(
            Labels("_", torch.zeros(1, 1, dtype=torch.int32, device=device)),
            [block],
        )
        return results


def export(path: str) -> None:
    module = CoulombBornMayer(CHARGES, CUTOFF).eval()
    capabilities = ModelCapabilities(
        outputs={
            "energy": ModelOutput(
                unit="eV", sample_kind="system", explicit_gradients=[]
            )
        },
        atomic_types=sorted(CHARGES),
        interaction_range=CUTOFF,
        length_unit="angstrom",
        supported_devices=["cpu"],
        dtype="float64",
    )
    metadata = ModelMetadata(
        name="torchpme-nacl-coulomb-born-mayer",
        description=(
            "Na(+1)/Cl(-1) point charges summed with torch-pme's P3M, plus a "
            f"Born-Mayer repulsion {BORN_A} eV exp(-r/{BORN_RHO} Å) within "
            f"{CUTOFF} Å; an example, not a fitted force field"
        ),
        authors=["torch-pme examples"],
        references={"implementation": ["https://github.com/lab-cosmo/torch-pme"]},
    )
    AtomisticModel(module, metadata, capabilities).save(path)


def born_mayer_reference(atoms):
    """Energy, forces and stress (ASE's Voigt order) of the repulsion, numpy."""
    i, d, vectors = neighbor_list("idD", atoms, CUTOFF)  # full list: each pair twice
    pair = BORN_A * np.exp(-d / BORN_RHO)
    energy = 0.5 * pair.sum()
    slope = -pair / BORN_RHO  # dφ/dr
    forces = np.zeros((len(atoms), 3))
    # D = r_j − r_i, dE/dr_i = −Σ_j φ'(d) D/d
    np.add.at(forces, i, slope[:, None] * vectors / d[:, None])
    virial = 0.5 * np.einsum("p,pa,pb->ab", slope / d, vectors, vectors)
    stress = virial / atoms.get_volume()
    voigt = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy, forces, voigt


def main():
    start = time.perf_counter()
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        export(path)
        size = os.path.getsize(path)
        model = load_atomistic_model(path)
    metadata = model.metadata()
    print(f"exported and reloaded '{metadata.name}' ({size / 1024:.0f} KiB)")
    for options in model.requested_neighbor_lists():
        print(
            f"requests a neighbour list: cutoff {options.cutoff} Å, "
            f"full {options.full_list}, strict {options.strict}"
        )

    # check_consistency: metatomic validates the inputs and the output metadata
    atoms.calc = MetatomicCalculator(model, check_consistency=True)
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()

    coulomb = TorchPMECalculator(
        charges={"Na": 1.0, "Cl": -1.0},
        method="p3m",
        cutoff=CUTOFF,
        smearing=SMEARING,
        params={"mesh_spacing": MESH_SPACING, "interpolation_nodes": NODES},
    )
    reference = atoms.copy()
    reference.calc = coulomb
    coulomb_energy = reference.get_potential_energy()
    repulsion_energy, repulsion_forces, repulsion_stress = born_mayer_reference(atoms)
    expected_energy = coulomb_energy + repulsion_energy
    expected_forces = reference.get_forces() + repulsion_forces
    expected_stress = reference.get_stress() + repulsion_stress

    # how good the P3M parameters are: a tightly converged Ewald sum
    converged = atoms.copy()
    converged.calc = TorchPMECalculator(
        charges={"Na": 1.0, "Cl": -1.0}, method="ewald", accuracy=1e-9
    )
    converged_forces = converged.get_forces()

    energy_error = abs(energy - expected_energy)
    force_error = np.abs(forces - expected_forces).max()
    stress_error = np.abs(stress - expected_stress).max()
    print(f"{len(atoms)} ions, rattled rock salt, cutoff {CUTOFF} Å")
    print(
        f"metatomic model in ASE: E = {energy:.8f} eV, "
        f"max |F| = {np.linalg.norm(forces, axis=1).max():.5f} eV/Å"
    )
    print(
        f"direct torchpme + numpy: E = {expected_energy:.8f} eV "
        f"(Coulomb {coulomb_energy:.6f}, Born-Mayer {repulsion_energy:.6f})"
    )
    print(f"|ΔE| = {energy_error:.1e} eV")
    print(f"max |ΔF| = {force_error:.1e} eV/Å")
    print(f"max |Δσ| = {stress_error:.1e} eV/Å³")
    lr_error = np.abs(reference.get_forces() - converged_forces).max()
    print(
        f"P3M Coulomb forces vs a converged Ewald sum: max |ΔF| = {lr_error:.1e} eV/Å"
    )
    print(f"took {time.perf_counter() - start:.1f} s")

    assert energy_error < 1e-8 * len(atoms), energy_error
    assert force_error < 1e-8, force_error
    assert stress_error < 1e-9, stress_error
    assert lr_error < 1e-5, lr_error


if __name__ == "__main__":
    main()
