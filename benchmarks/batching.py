"""Benchmark of batched mesh calculators: ``forward_batch`` against a Python loop.

32 random ionic systems of 64–256 atoms in cubic-ish cells (equal densities, so the
mesh sizes fall into a few groups), energy + forces with PME and P3M, float64.
Measured twice: with the calculators' filter cache as it works when the same cells
come back (MD of replicas: the batch keeps one filter per group, the loop's 32
cells overflow the few cached entries), and with the cache emptied before every
call (cells that change every step).

    python benchmarks/batching.py
    python benchmarks/batching.py --keep-freed-memory   # torchpme.keep_freed_memory()

With ``--keep-freed-memory`` the process's allocator keeps freed memory for reuse
(loop and batch alike): the repeated steps then stop paying page faults for the
meshes they free and allocate again.
"""

import argparse
import statistics
import time

import numpy as np
import torch

import torchpme
from torchpme.neighbors import compute_neighbors


def make_systems(count=32, seed=0):
    rng = np.random.default_rng(seed)
    systems = []
    for _ in range(count):
        n = int(rng.integers(32, 129)) * 2
        length = (n / 0.04) ** (1 / 3)
        cell = length * np.eye(3) + rng.uniform(-0.5, 0.5, size=(3, 3))
        positions = rng.uniform(0, 1, size=(n, 3)) @ cell
        charges = np.repeat([[1.0], [-1.0]], n // 2, axis=0)
        systems.append(
            [torch.tensor(a, dtype=torch.float64) for a in (positions, charges, cell)]
        )
    return systems


def main(cutoff=6.0, rounds=3):
    systems = make_systems()
    lists = []
    for positions, _, cell in systems:
        indices, shifts = compute_neighbors(
            positions, cell, cutoff, return_shifts=True
        )[::2]
        lists.append((indices, shifts.to(torch.float64)))
    potential = torchpme.CoulombPotential(smearing=1.5)
    for name, calculator in [
        (
            "pme",
            torchpme.PMECalculator(potential, mesh_spacing=1.5, interpolation_nodes=4),
        ),
        (
            "p3m",
            torchpme.P3MCalculator(potential, mesh_spacing=1.5, interpolation_nodes=4),
        ),
    ]:

        def loop():
            for (positions, charges, cell), (indices, shifts) in zip(
                systems, lists, strict=True
            ):
                pos = positions.clone().requires_grad_(True)
                vectors = pos[indices[:, 1]] + shifts @ cell - pos[indices[:, 0]]
                energy = (
                    charges
                    * calculator(
                        charges, cell, pos, indices, torch.linalg.norm(vectors, dim=1)
                    )
                ).sum()
                torch.autograd.grad(energy, pos)

        offsets = np.cumsum([0] + [len(p) for p, _, _ in systems])
        positions = torch.cat([p for p, _, _ in systems])
        charges = torch.cat([q for _, q, _ in systems])
        cells = torch.stack([c for _, _, c in systems])
        system_index = torch.cat(
            [torch.full((len(p),), i) for i, (p, _, _) in enumerate(systems)]
        )
        indices = torch.cat(
            [i + int(o) for (i, _), o in zip(lists, offsets, strict=False)]
        )
        shifts = torch.cat([s for _, s in lists])
        owner_cells = cells[system_index[indices[:, 0]]]

        def batch():
            pos = positions.clone().requires_grad_(True)
            vectors = (
                pos[indices[:, 1]]
                + torch.einsum("pi,pij->pj", shifts, owner_cells)
                - pos[indices[:, 0]]
            )
            energy = (
                charges
                * calculator.forward_batch(
                    charges,
                    cells,
                    pos,
                    system_index,
                    indices,
                    torch.linalg.norm(vectors, dim=1),
                )
            ).sum()
            torch.autograd.grad(energy, pos)

        for cached in (True, False):
            timings = {"loop": float("inf"), "batch": float("inf")}
            # blocks of repeated calls, alternating; the fastest block median of
            # each is kept (this machine's speed drifts between blocks)
            for _ in range(rounds):
                for label, function in [("loop", loop), ("batch", batch)]:
                    function()
                    samples = []
                    for _ in range(5):
                        if not cached:  # as if the cells changed on every call
                            calculator.__dict__.pop("_filter_cache", None)
                        start = time.perf_counter()
                        function()
                        samples.append(time.perf_counter() - start)
                    timings[label] = min(timings[label], statistics.median(samples))
            print(
                f"{name} ({'filters cached' if cached else 'fresh filters'}): "
                f"loop {1e3 * timings['loop']:.1f} ms, "
                f"batch {1e3 * timings['batch']:.1f} ms, "
                f"speedup {timings['loop'] / timings['batch']:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="call torchpme.keep_freed_memory() first",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating blocks of 5 calls each"
    )
    arguments = parser.parse_args()
    if arguments.keep_freed_memory:
        print(f"keep_freed_memory: {torchpme.keep_freed_memory()}")
    main(rounds=arguments.rounds)
