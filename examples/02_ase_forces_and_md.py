"""Forces, stress and a short molecular-dynamics run with ASE.

:class:`torchpme.ase.TorchPMECalculator` gives ASE the Coulomb energy, forces and
stress of fixed point charges (eV and Å by default). The parameters are tuned on
the first call and reused while the cell stays (nearly) the same, so an NVE run
tunes once. Point charges alone have no repulsion: a short run from a slightly
disordered rock-salt crystal stays well behaved, a long one would not.

Run: ``python examples/02_ase_forces_and_md.py``
"""

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from torchpme.ase import TorchPMECalculator


def main():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.calc = TorchPMECalculator(charges={"Na": 1.0, "Cl": -1.0}, accuracy=1e-6)

    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    print(f"energy {energy:.6f} eV for {len(atoms)} ions")
    print(f"largest force {np.linalg.norm(forces, axis=1).max():.4f} eV/Å")
    print(f"pressure {-stress[:3].mean() / units.GPa:.3f} GPa")
    print(f"parameters: {atoms.calc.parameters_in_use.describe()}")

    # Maxwell-Boltzmann momenta at 300 K: p = sqrt(m k_B T) · N(0, 1)
    masses = atoms.get_masses()[:, None]
    momenta = np.sqrt(masses * units.kB * 300) * rng.normal(size=(len(atoms), 3))
    atoms.set_momenta(momenta - momenta.mean(axis=0))  # no drift of the centre
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    totals = []

    def record():
        totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    dynamics.attach(record, interval=1)
    dynamics.run(20)
    drift = max(totals) - min(totals)
    print(f"NVE, 20 steps of 1 fs: total energy varies by {drift:.2e} eV")
    print(f"tuned {atoms.calc.tunings} time(s)")
    assert drift < 1e-3 * len(atoms), drift
    assert atoms.calc.tunings == 1


if __name__ == "__main__":
    main()
