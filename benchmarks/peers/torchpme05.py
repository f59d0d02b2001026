"""Peer: torch-pme 0.5 from PyPI (``pip install "torch-pme==0.5.*"``), P3M tuned by
its own ``torchpme.tuning.tune_p3m``.

Run in the torch-pme 0.5 virtual environment:
    python torchpme05.py SYSTEM.npz OUT.npz --accuracy 1e-4 [--cutoff 6]

Recipe: the same as ``ours.py`` (float64, mesh_hi from systems.mesh_hi_for, half neighbour list with cell shifts
built once OUTSIDE the timed step, here by vesin as torch-pme's docs do; distances
recomputed from the positions inside the step; E = Σ q_i V_i, forces by
autograd), with torch-pme 0.5's tuner, whose ``accuracy`` is also absolute
(relative target × RMS reference force).
"""

import os
import sys
import time
import warnings

# largest mesh exponent the tuner may try: the default, 7 (128 points per axis),
# cannot reach 1e-4 on rock salt from N = 4096 on; systems.mesh_hi_for grows it
# with the box (7, 8, 9 for N = 512, 4096, 32768)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systems


def main():
    args = systems.parse_peer_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    import vesin

    import torchpme
    from torchpme.tuning import tune_p3m

    system = systems.load_system(args.system)
    positions = torch.tensor(system["positions"])
    charges = torch.tensor(system["charges"])[:, None]
    cell = torch.tensor(system["cell"])
    cutoff = args.cutoff or 6.0

    t0 = time.perf_counter()
    nl = vesin.NeighborList(cutoff=cutoff, full_list=False)
    pairs, shifts, distances = nl.compute(
        points=system["positions"], box=system["cell"], periodic=True, quantities="PSd"
    )
    indices = torch.tensor(pairs.astype("int64"))
    shifts = torch.tensor(shifts.astype("float64"))
    distances = torch.tensor(distances)
    t_nl = time.perf_counter() - t0

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        smearing, params, _ = tune_p3m(
            charges, cell, positions, cutoff, indices, distances,
            accuracy=args.accuracy * system["force_rms"], mesh_hi=systems.mesh_hi_for(system["cell"]),
        )  # fmt: skip
    t_tune = time.perf_counter() - t0
    calculator = torchpme.P3MCalculator(
        torchpme.CoulombPotential(smearing=smearing), **params
    )

    def step():
        pos = positions.detach().requires_grad_(True)
        vectors = pos[indices[:, 1]] - pos[indices[:, 0]] + shifts @ cell
        potentials = calculator(charges, cell, pos, indices, vectors.norm(dim=1))
        energy = (charges * potentials).sum()
        (grad,) = torch.autograd.grad(energy, pos)
        return float(energy.detach()), (-grad).detach()

    systems.measure(
        "torchpme05",
        f"torch-pme {torchpme.__version__} (PyPI), torch {torch.__version__}",
        system,
        step,
        args,
        params={
            "cutoff": cutoff,
            "smearing": smearing,
            **params,
            "mesh_hi": systems.mesh_hi_for(system["cell"]),
        },
        tune_s=t_tune,
        tuner_warnings=[str(w.message)[:200] for w in caught],
        neighbors_s=t_nl,
        notes="P3M, float64, neighbour list (vesin) outside the timed step",
    )


if __name__ == "__main__":
    main()
