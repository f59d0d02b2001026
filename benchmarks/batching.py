"""Benchmark of batched mesh calculators: ``energy_batch`` against a Python loop.

32 random ionic systems of 64–256 atoms in cubic-ish cells (equal densities, so the
mesh sizes fall into a few groups), energy + forces with PME and P3M, float64: a
loop of ``energy`` calls (each system's neighbour list held as a ``PairList``)
against one ``energy_batch`` call (``forward_batch`` and ``Σ q V`` where the
implementation has no ``energy_batch``). Measured twice: with the filters kept
(MD of replicas whose cells come back: the loop passes each system's
``mesh_filter``, the batch all of them as ``mesh_filters``) and with filters
computed on every call (cells that change every step).

    python benchmarks/batching.py
    python benchmarks/batching.py --keep-freed-memory   # torchpme.keep_freed_memory()

Each kind of step runs in a process of its own (alternating processes, the
fastest of each kept), as a program runs one or the other: in one process, loop
blocks between batch blocks left glibc's heap where the batch's buffers were
faulted in again (the same batch step took 22–25 ms run alone, 34–38 ms after loop
blocks). ``--same-process`` measures that way anyway. With
``--keep-freed-memory`` the processes' allocator keeps freed memory for reuse
(loop and batch alike): the repeated steps then stop paying page faults for the
meshes they free and allocate again.
"""

import argparse
import statistics
import subprocess
import sys
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


CALCULATORS = {
    "pme": lambda potential: torchpme.PMECalculator(
        potential, mesh_spacing=1.5, interpolation_nodes=4
    ),
    "p3m": lambda potential: torchpme.P3MCalculator(
        potential, mesh_spacing=1.5, interpolation_nodes=4
    ),
}


def steps(method: str, cached: bool, cutoff: float = 6.0):
    """The calculator and its two energy + forces steps over the 32 systems: a
    Python loop of single-system calls and one batched call."""
    systems = make_systems()
    lists = []
    for positions, _, cell in systems:
        indices, shifts = compute_neighbors(
            positions, cell, cutoff, return_shifts=True
        )[::2]
        lists.append((indices, shifts.to(torch.float64)))
    calculator = CALCULATORS[method](torchpme.CoulombPotential(smearing=1.5))
    explicit = hasattr(calculator, "energy_batch")
    held = []
    for (_, _, cell), (indices, shifts) in zip(systems, lists, strict=True):
        extra = (
            {"mesh_filter": calculator.mesh_filter(cell)} if explicit and cached else {}
        )
        pairs = torchpme.neighbors.PairList(indices, shifts) if explicit else indices
        held.append((pairs, extra))

    def single_energy(charges, cell, pos, pairs, extra, distances):
        if explicit:
            return calculator.energy(charges, cell, pos, pairs, distances, **extra)
        return (charges * calculator(charges, cell, pos, pairs, distances)).sum()

    def loop():
        for (positions, charges, cell), (indices, shifts), (pairs, extra) in zip(
            systems, lists, held, strict=True
        ):
            pos = positions.clone().requires_grad_(True)
            vectors = pos[indices[:, 1]] + shifts @ cell - pos[indices[:, 0]]
            distances = torch.linalg.norm(vectors, dim=1)
            energy = single_energy(charges, cell, pos, pairs, extra, distances)
            torch.autograd.grad(energy, pos)

    offsets = np.cumsum([0] + [len(p) for p, _, _ in systems])
    positions = torch.cat([p for p, _, _ in systems])
    charges = torch.cat([q for _, q, _ in systems])
    cells = torch.stack([c for _, _, c in systems])
    system_index = torch.cat(
        [torch.full((len(p),), i) for i, (p, _, _) in enumerate(systems)]
    )
    indices = torch.cat([i + int(o) for (i, _), o in zip(lists, offsets, strict=False)])
    shifts = torch.cat([s for _, s in lists])
    owner_cells = cells[system_index[indices[:, 0]]]
    batch_pairs = torchpme.neighbors.PairList(indices) if explicit else indices
    batch_extra = {}
    if explicit and cached:
        batch_extra["mesh_filters"] = [calculator.mesh_filter(cell) for cell in cells]

    def batch():
        pos = positions.clone().requires_grad_(True)
        vectors = (
            pos[indices[:, 1]]
            + torch.einsum("pi,pij->pj", shifts, owner_cells)
            - pos[indices[:, 0]]
        )
        distances = torch.linalg.norm(vectors, dim=1)
        arguments = (charges, cells, pos, system_index, batch_pairs, distances)
        if explicit:
            energy = calculator.energy_batch(*arguments, **batch_extra).sum()
        else:
            energy = (charges * calculator.forward_batch(*arguments)).sum()
        torch.autograd.grad(energy, pos)

    return calculator, {"loop": loop, "batch": batch}


def block(calculator, function, cached: bool) -> float:
    """Median time of 5 calls after one warm-up call."""
    function()
    samples = []
    for _ in range(5):
        if not cached:  # as if the cells changed on every call
            calculator.__dict__.pop("_filter_cache", None)  # an implicit cache
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_here(method: str, mode: str, cached: bool, blocks: int) -> float:
    """The fastest block median of one step kind, in this process."""
    calculator, functions = steps(method, cached)
    return min(block(calculator, functions[mode], cached) for _ in range(blocks))


def measure_apart(method: str, mode: str, cached: bool, keep: bool) -> float:
    """:func:`measure_here` in a fresh process, which runs nothing else."""
    command = [sys.executable, __file__, "--measure", method, mode, str(int(cached))]
    if keep:
        command.append("--keep-freed-memory")
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def main(rounds: int, same_process: bool, keep: bool):
    for method in CALCULATORS:
        for cached in (True, False):
            if same_process:
                calculator, functions = steps(method, cached)
            timings = {"loop": float("inf"), "batch": float("inf")}
            # alternating rounds, the fastest of each kept (this machine's speed
            # drifts); each round measures both kinds, each in its own process
            # unless --same-process
            for _ in range(rounds):
                for mode in timings:
                    if same_process:
                        seconds = block(calculator, functions[mode], cached)
                    else:
                        seconds = measure_apart(method, mode, cached, keep)
                    timings[mode] = min(timings[mode], seconds)
            print(
                f"{method} ({'filters cached' if cached else 'fresh filters'}): "
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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run loop and batch blocks alternately in one process",
    )
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.keep_freed_memory:
        kept = torchpme.keep_freed_memory()
        if not arguments.measure:
            print(f"keep_freed_memory: {kept}")
    if arguments.measure:
        method, mode, cached = arguments.measure
        print(measure_here(method, mode, cached == "1", blocks=2))
    else:
        main(arguments.rounds, arguments.same_process, arguments.keep_freed_memory)
