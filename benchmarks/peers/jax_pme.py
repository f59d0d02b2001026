"""Peer: jax-pme (JAX on the CPU), its P3M calculator.

Run in the jax-pme virtual environment:
    python jax_pme.py SYSTEM.npz OUT.npz --params '{"smearing": .., "mesh_spacing": ..,
        "interpolation_nodes": .., "cutoff": ..}'

jax-pme 0.1 has no tuner (its ``prepare`` takes cutoff, mesh spacing and smearing
as given), so the parameters come from the command line; the driver passes the
ones this repository's ``tune_p3m`` chose for the same system and target (the
``ours`` peer), and the measured error says whether they carry over. float64
(``jax_enable_x64``); the jitted ``energy_forces`` is timed after compilation
(warm-up). Neighbour list: vesin, as jax-pme's ``prepare`` builds it, once and
OUTSIDE the timed step; pair distances are recomputed inside it from positions
and cell shifts (jax-pme's own code path).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systems


def main():
    argv = sys.argv[1:]
    params = None
    if "--params" in argv:
        k = argv.index("--params")
        params = json.loads(argv[k + 1])
        del argv[k : k + 2]
    args = systems.parse_peer_args(argv)
    if params is None:
        raise SystemExit("jax_pme.py needs --params (jax-pme has no tuner)")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxpme
    import numpy as np
    import vesin
    from jaxpme.kspace import get_kgrid_mesh

    system = systems.load_system(args.system)
    cutoff = params.get("cutoff", args.cutoff or 6.0)
    t0 = time.perf_counter()
    calc = jaxpme.P3M(interpolation_nodes=int(params["interpolation_nodes"]))
    nl = vesin.NeighborList(cutoff=cutoff, full_list=False)
    i, j, shifts = nl.compute(
        points=system["positions"], box=system["cell"], periodic=True, quantities="ijS"
    )
    if (
        "mesh" in params
    ):  # the mesh the tuner's calculator used (jax-pme rounds 2L/h differently)
        k_grid = np.ones(tuple(int(m) for m in params["mesh"]))
    else:
        k_grid = get_kgrid_mesh(system["cell"], float(params["mesh_spacing"]))
    charges = jnp.asarray(system["charges"])
    cell = jnp.asarray(system["cell"])
    positions = jnp.asarray(system["positions"])
    i, j, shifts = jnp.asarray(i), jnp.asarray(j), jnp.asarray(shifts)
    smearing = float(params["smearing"])
    k_grid = jnp.asarray(k_grid)
    energy_forces = jax.jit(calc.energy_forces)

    def step():
        energy, forces = energy_forces(
            charges, cell, positions, i, j, shifts, k_grid, smearing
        )
        forces.block_until_ready()
        return float(energy), forces

    step()  # compile
    t_setup = time.perf_counter() - t0
    systems.measure(
        "jax_pme",
        f"jax-pme {jaxpme.__version__}, jax {jax.__version__}",
        system,
        step,
        args,
        params={**params, "cutoff": cutoff, "mesh": list(k_grid.shape)},
        tune_s=t_setup,
        notes=f"P3M, float64, jit, mesh {k_grid.shape[0]}^3; no tuner: parameters (and mesh) of ours' tune_p3m; "
        "neighbour list (vesin) outside the timed step",
    )


if __name__ == "__main__":
    main()
