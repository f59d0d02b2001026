"""Peer: OpenMM NonbondedForce with PME on the CPU platform.

Run in the OpenMM virtual environment:
    python openmm_cpu.py SYSTEM.npz OUT.npz --accuracy 1e-4 [--cutoff 6] [--tolerance T]

Recipe: point charges with no Lennard-Jones (epsilon 0), PME with the real-space
cutoff given (Å), ``ewaldErrorTolerance`` = the relative target accuracy (OpenMM
documents it as roughly the relative force error; ``--tolerance`` overrides it),
no dispersion correction. OpenMM then picks the Ewald parameter and the grid
itself. Units: OpenMM uses nm, kJ/mol and e; forces are converted back to e²/Å²
with the Coulomb constant OpenMM uses (measured from a two-charge system).
Neighbour list: built and kept by OpenMM as it runs (rebuilt only when atoms
move beyond its padding); the first, untimed call builds it, so the timed steps
(setPositions + getState(energy, forces)) reuse it, as in MD. The CPU platform
computes the nonbonded forces in single precision.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systems


def coulomb_constant(mm, unit):
    """OpenMM's 1/(4 pi eps0) in kJ/mol nm/e²: energy of +1/+1 at 1 nm, no cutoff."""
    system = mm.System()
    force = mm.NonbondedForce()
    force.setNonbondedMethod(mm.NonbondedForce.NoCutoff)
    for _ in range(2):
        system.addParticle(1.0)
        force.addParticle(1.0, 0.1, 0.0)
    system.addForce(force)
    context = mm.Context(
        system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference")
    )
    context.setPositions([mm.Vec3(0, 0, 0), mm.Vec3(1.0, 0, 0)] * unit.nanometer)
    return (
        context.getState(getEnergy=True)
        .getPotentialEnergy()
        .value_in_unit(unit.kilojoule_per_mole)
    )


def main():
    args = systems.parse_peer_args()
    tolerance = args.tolerance or args.accuracy
    import numpy as np
    import openmm as mm
    from openmm import unit

    system_data = systems.load_system(args.system)
    k_e = coulomb_constant(mm, unit)
    cutoff = args.cutoff or 6.0
    positions_nm = system_data["positions"] / 10.0
    cell_nm = system_data["cell"] / 10.0

    t0 = time.perf_counter()
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in cell_nm))
    force = mm.NonbondedForce()
    force.setNonbondedMethod(mm.NonbondedForce.PME)
    force.setCutoffDistance(cutoff / 10.0)
    force.setEwaldErrorTolerance(tolerance)
    force.setUseDispersionCorrection(False)
    force.setUseSwitchingFunction(False)
    for q in system_data["charges"]:
        system.addParticle(1.0)
        force.addParticle(float(q), 0.1, 0.0)
    system.addForce(force)
    platform = mm.Platform.getPlatformByName("CPU")
    context = mm.Context(
        system, mm.VerletIntegrator(0.001), platform, {"Threads": str(args.threads)}
    )
    context.setPositions(positions_nm)
    alpha, nx, ny, nz = force.getPMEParametersInContext(context)
    t_setup = time.perf_counter() - t0

    def step():
        context.setPositions(positions_nm)
        state = context.getState(getEnergy=True, getForces=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        forces = state.getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer
        )
        return energy, np.asarray(forces)

    # E[e²/Å] = E[kJ/mol] / (10 k_e);  F[e²/Å²] = F[kJ/mol/nm] / (100 k_e)
    systems.measure(
        "openmm_cpu",
        f"OpenMM {mm.__version__} (CPU platform, {args.threads} threads)",
        system_data,
        step,
        args,
        scales=(1.0 / (10.0 * k_e), 1.0 / (100.0 * k_e)),
        params={
            "cutoff": cutoff,
            "ewaldErrorTolerance": tolerance,
            "alpha_per_nm": alpha,
            "grid": [nx, ny, nz],
            "coulomb_constant": k_e,
        },
        tune_s=t_setup,
        notes=f"PME tol {tolerance:g} (grid {nx}x{ny}x{nz}), single precision, "
        "neighbour list kept by OpenMM between steps",
    )


if __name__ == "__main__":
    main()
