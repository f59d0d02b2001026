"""Peer: NVIDIA ALCHEMI Toolkit-Ops (``nvalchemiops``, Warp kernels) PME, on the CPU.

Run in the nvalchemi virtual environment:
    python alchemi_pme.py SYSTEM.npz OUT.npz --accuracy 1e-4 [--cutoff 6] [--tolerance T]

Recipe: ``estimate_pme_parameters(accuracy=T, real_space_cutoff=cutoff)`` (its
own estimator; T = the relative target unless ``--tolerance`` overrides it),
float64, ``particle_mesh_ewald`` energy with forces by autograd (the documented
route since 0.4). Neighbour matrix from ``nvalchemiops.torch.neighbors.neighbor_list``
(default method, full list), built once OUTSIDE the timed step, as its docs
show it (the neighbour search is a separate call).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systems


def main():
    args = systems.parse_peer_args()
    import torch

    torch.set_num_threads(args.threads)
    import warp as wp

    wp.config.quiet = True
    import nvalchemiops
    from nvalchemiops.torch.interactions.electrostatics import (
        estimate_pme_parameters,
        particle_mesh_ewald,
    )
    from nvalchemiops.torch.neighbors import neighbor_list

    system = systems.load_system(args.system)
    tolerance = args.tolerance or args.accuracy
    cutoff = args.cutoff or 6.0
    positions = torch.tensor(system["positions"], dtype=torch.float64)
    charges = torch.tensor(system["charges"], dtype=torch.float64)
    cell = torch.tensor(system["cell"], dtype=torch.float64)
    pbc = torch.ones(3, dtype=torch.bool)

    t0 = time.perf_counter()
    params = estimate_pme_parameters(
        positions, cell, accuracy=tolerance, real_space_cutoff=cutoff
    )
    alpha = float(params.alpha.reshape(-1)[0])
    mesh = tuple(int(m) for m in params.mesh_dimensions)
    rc = float(params.real_space_cutoff.reshape(-1)[0])
    nmat, _counts, nshift = neighbor_list(
        positions, cutoff=rc, cell=cell.reshape(1, 3, 3), pbc=pbc.reshape(1, 3)
    )
    t_setup = time.perf_counter() - t0

    def step():
        pos = positions.detach().requires_grad_(True)
        energy = particle_mesh_ewald(
            pos, charges, cell, alpha=alpha, mesh_dimensions=mesh, spline_order=5,
            neighbor_matrix=nmat, neighbor_matrix_shifts=nshift,
            energy_reduction="system",
        ).sum()  # fmt: skip
        (grad,) = torch.autograd.grad(energy, pos)
        return float(energy.detach()), (-grad).detach()

    systems.measure(
        "alchemi_pme",
        f"nvalchemi-toolkit-ops {getattr(nvalchemiops, '__version__', '?')}, warp {wp.__version__} (CPU)",
        system,
        step,
        args,
        params={
            "cutoff": rc,
            "alpha": alpha,
            "mesh": list(mesh),
            "accuracy_arg": tolerance,
        },
        tune_s=t_setup,
        notes=f"PME order 5, mesh {mesh[0]}^3, float64, autograd forces; "
        "neighbour matrix outside the timed step",
    )


if __name__ == "__main__":
    main()
