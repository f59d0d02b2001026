"""Benchmark of clusters (no periodic direction): PME/P3M on the free-space mesh
against the direct sum over all pairs.

A rock-salt nanoparticle (the lattice of ``_systems.rocksalt`` cut to a sphere,
ions displaced by 0.1 Å, net charge as it falls) of ``N`` ions: energy and forces
by

* ``direct``: ``Calculator(CoulombPotential())`` over all pairs (O(N²));
* ``pme`` / ``p3m``: ``periodic`` all False, pairs within the cutoff
  (smearing, cutoff, mesh spacing and nodes below);
* ``pme-box``: PME on a fixed mesh over a cube that bounds the cluster, the
  filter kept between steps (MD in a fixed box).

Reported: the time of one energy + forces step (median of ``--repeat``), the RMS
force error of the mesh methods relative to the RMS force of the direct sum, and
the time ratio direct / mesh. The direct sum holds all ``N(N−1)/2`` pairs, so it
runs only up to ``--direct-max`` ions; beyond, its time is extrapolated as ``N²``
from the largest size it ran (marked ``~``).
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch
from _systems import LATTICE

import torchpme
from torchpme import Calculator, CoulombPotential, P3MCalculator, PMECalculator
from torchpme.neighbors import PairList, compute_neighbors, pair_distances

# mesh parameters for about 1e-5 relative RMS force error (nodes on the free-space
# mesh are mesh_spacing / 2 apart)
SMEARING, CUTOFF = 3.0, 16.0
METHODS = {
    "pme": lambda potential: PMECalculator(
        potential, mesh_spacing=1.6, interpolation_nodes=7
    ),
    "p3m": lambda potential: P3MCalculator(
        potential, mesh_spacing=1.8, interpolation_nodes=5
    ),
}
# "pme-box": PME on a fixed mesh over a cube that bounds the cluster (nodes
# BOX_SPACING apart, as PME's h = 1.6), its filter kept between steps
BOX_SPACING = 0.8
CLUSTER = torch.tensor([False, False, False])


def nanoparticle(n_atoms: int, seed: int = 0):
    """About ``n_atoms`` rock-salt ions within a sphere: positions, charges."""
    radius = (3.0 * n_atoms / (4.0 * np.pi * 8.0 / LATTICE**3)) ** (1.0 / 3.0)
    reach = int(np.ceil(2.0 * radius / LATTICE)) + 1
    steps = np.arange(-2 * reach, 2 * reach + 1)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    positions = 0.5 * LATTICE * grid
    inside = np.linalg.norm(positions, axis=1) <= radius
    positions, grid = positions[inside], grid[inside]
    positions += np.random.default_rng(seed).normal(scale=0.1, size=positions.shape)
    charges = (-1.0) ** grid.sum(axis=1)
    return (
        torch.tensor(positions),
        torch.tensor(charges[:, None]),
    )


def boxed(positions):
    """``(positions, box, nodes)``: the cluster moved into a cube that bounds it,
    and the nodes per edge for a node spacing of ``BOX_SPACING``."""
    moved = positions - positions.min(dim=0).values + 0.5
    edge = float(moved.max()) + 0.5
    box = torch.eye(3, dtype=positions.dtype) * edge
    return moved, box, math.ceil(edge / BOX_SPACING)


def step_time(calculator, charges, positions, cutoff, repeat, box=None):
    """``(median seconds, forces)`` of energy + forces, neighbours excluded: the
    list is built once and passed as a ``PairList``, its distances taken by
    ``pair_distances`` (the library's own path for every method). With a
    ``box`` (a fixed mesh), the filter is made once and kept, as in MD."""
    indices, _ = compute_neighbors(positions, None, cutoff, periodic=False)
    pairs = PairList(indices)
    zeros = torch.zeros(3, 3, dtype=positions.dtype)
    cell, kept = zeros, None
    if box is not None:
        cell, kept = box, calculator.mesh_filter(box, periodic=CLUSTER)
    times, forces = [], None
    for _ in range(repeat):
        r = positions.clone().requires_grad_(True)
        start = time.perf_counter()
        distances = pair_distances(r, zeros, pairs)
        energy = calculator.energy(
            charges, cell, r, pairs, distances, periodic=CLUSTER, mesh_filter=kept
        )
        forces = -torch.autograd.grad(energy, r)[0]
        times.append(time.perf_counter() - start)
    return statistics.median(times), forces


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--direct-max", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# torchpme {torchpme.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; smearing {SMEARING}, cutoff {CUTOFF}"
    )
    print(f"{'N':>7} {'method':>7} {'s':>9} {'force err':>10} {'direct/x':>9}")
    largest = None
    for size in args.sizes:
        positions, charges = nanoparticle(size)
        n_atoms = len(positions)
        diameter = float(torch.cdist(positions[:1], positions).max()) * 2.0 + 1.0
        reference = None
        if n_atoms <= args.direct_max:
            direct, reference = step_time(
                Calculator(CoulombPotential()), charges, positions, diameter, 1
            )
            largest = (n_atoms, direct)
            print(f"{n_atoms:7d} {'direct':>7} {direct:9.3f}")
            mark = ""
        else:
            direct = largest[1] * (n_atoms / largest[0]) ** 2
            mark = "~"
        runs = [
            (name, build(CoulombPotential(smearing=SMEARING)), positions, None)
            for name, build in METHODS.items()
        ]
        moved, box, nodes = boxed(positions)
        fixed = PMECalculator(
            CoulombPotential(smearing=SMEARING),
            mesh_spacing=2.0 * BOX_SPACING,
            interpolation_nodes=7,
            fixed_mesh=[nodes] * 3,
        )
        runs.append(("pme-box", fixed, moved, box))
        for name, calculator, where, cube in runs:
            seconds, forces = step_time(
                calculator, charges, where, CUTOFF, args.repeat, cube
            )
            error = "-"
            if reference is not None:
                rms = torch.sqrt(torch.mean((forces - reference) ** 2))
                error = f"{float(rms / torch.sqrt(torch.mean(reference**2))):.1e}"
            ratio = f"{mark}{direct / seconds:.1f}"
            print(f"{n_atoms:7d} {name:>7} {seconds:9.3f} {error:>10} {ratio:>9}")


if __name__ == "__main__":
    main()
