"""Benchmark of ``torchpme.distributed``: one periodic system over gloo processes.

``N`` random atoms in a cubic cell at 0.1 atoms/Å³, charges ±1, float64, P3M
Coulomb with fixed parameters (flags; the calculator's own mesh has at least
``2L/h + 1`` points, so ``--mesh-spacing 2.0`` puts nodes ≤ 1 Å apart: 128³ at
N = 32768). Each rank builds the system from one seed, keeps every ``P``-th
atom, hands them to their domains (``migrate``) and calls
``torchpme.keep_freed_memory()`` (no page faults in every step).

1. Strong scaling (``--ranks``): median of ``--repeat`` steps (after
   ``--warmup``) of ``energy`` + ``backward`` to positions and cell between
   barriers, rank 0 of ``P`` spawned processes of ``--threads // P`` threads
   (the step builds its own neighbour list); ``single``: ``P3MCalculator``'s
   energy + backward, ``compute_neighbors`` in the step, ``--threads``
   threads; ``dE``: relative difference of the energies.
2. Memory per rank (``--memory-ranks``): bytes of the main arrays of one call
   (``_step``, ``_pairs``; pairs at 24 bytes), and peak RSS minus the RSS
   after the imports (``VmHWM``: ``ru_maxrss`` holds the parent's peak).
3. Traffic: in one step each rank counts the bytes it sends to other ranks by
   wrapping ``all_to_all_single``, ``all_reduce`` (a ring: ``2 (P-1)/P`` times
   the tensor) and ``all_gather`` (``P - 1`` times); :func:`model_bytes` derives
   them from the code: halo planes out (sum) and back (backward), transpose
   and adjoint, ghosts (the atoms within the cutoff above another rank's) out
   and their gradients back, small collectives. A
   buffer reaches about ``nodes/2`` planes past each face of its slab
   (``slabs.plane_arc`` counts nodes from the middle of the slab). The model
   follows the code; ghost counts are random (a few % at small N).
4. On paper: the model at N = 1e6-1e8 on 8-64 GPUs (1 Å mesh, ``n = ceil(L)``),
   timed at NVLink (450 GB/s per GPU) and InfiniBand NDR200 (25 GB/s per GPU):
   bandwidth only. ``pencils``: more ranks than planes; ``thin``: the stencil or
   the cutoff reaches past the neighbouring slab.

Timings on a shared 2-core machine are noisy; ``--json PATH`` writes all numbers.

    python benchmarks/distributed.py --sizes 32768 --ranks 1 2 --memory-ranks 1 2 4
    python benchmarks/distributed.py --sizes 262144 --repeat 3 --json out.json
"""

import argparse
import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from _compare import write_json

from torchpme import CoulombPotential, P3MCalculator, keep_freed_memory
from torchpme.distributed import DistributedCalculator, migrate
from torchpme.neighbors import compute_neighbors, pair_distances

DENSITY = 0.1
DTYPE = torch.float64
BANDWIDTHS = {"NVLink": 450e9, "IB": 25e9}
# bytes every rank gathers to all per call: in ``_step`` 27 float64 (a failure
# flag, the fingerprint: cell 9, mesh 3, method 4, dtype and channels 2, gradient
# flags 4; its buffer arc 2, occupied arc of s0 2), in ``_pairs`` a float32 flag
PUBLISHED = 27 * 8 + 4
KINDS = ("halo", "transpose", "ghosts", "small")


def system(n_atoms: int, seed: int = 0):
    """Positions ``(N, 3)``, charges ``(N, 1)`` (±1, neutral) and cubic cell."""
    rng = np.random.default_rng(seed)
    edge = (n_atoms / DENSITY) ** (1.0 / 3.0)
    positions = torch.tensor(rng.uniform(0.0, edge, size=(n_atoms, 3)))
    charges = torch.where(torch.arange(n_atoms) % 2 == 0, 1.0, -1.0).to(DTYPE)
    charges = charges - charges.mean()
    return positions, charges.unsqueeze(1), torch.eye(3, dtype=DTYPE) * edge


def calculator(options: dict) -> P3MCalculator:
    potential = CoulombPotential(smearing=options["smearing"])
    return P3MCalculator(potential, options["mesh_spacing"], options["nodes"],
                         fixed_mesh=options["mesh"]).to(DTYPE)  # fmt: skip


def _ring(nbytes: float, ranks: int) -> float:
    return 2.0 * (ranks - 1) / ranks * nbytes


def _near(r: int, s: int, ranks: int, reach: float) -> float:
    """Share of all atoms in domain ``r`` within ``reach`` (in ``s₀``) above
    domain ``s`` (the ghosts of ``s`` from ``r``: each pair across two ranks is
    computed by the rank of its lower atom), on the circle ``[0, 1)``."""
    start, end = s / ranks, (s + 1) / ranks + reach
    if end - start >= 1.0:
        return 1.0 / ranks
    low, high = r / ranks, (r + 1) / ranks
    return sum(max(0.0, min(high, end + k) - max(low, start + k)) for k in (-1, 0, 1))


def model_bytes(n_atoms, mesh, ranks, cutoff, density, nodes, channels=1,
                dtype_bytes=8) -> dict:  # fmt: skip
    """Bytes each rank sends to other ranks in one ``energy`` + ``backward`` (to
    positions and cell), by kind, averaged over the ranks (``max``: the most
    any rank sends), for atoms evenly filling a cubic cell, in their domains."""
    if ranks == 1:
        return dict.fromkeys((*KINDS, "total", "max"), 0.0)
    n0, n1, n2 = mesh
    planes = [(r * n0) // ranks for r in range(ranks + 1)]
    rows = [(r * n1) // ranks for r in range(ranks + 1)]
    owner = [r for r in range(ranks) for _ in range(planes[r], planes[r + 1])]
    buffers = []  # owners of each rank's buffer planes
    for r in range(ranks):
        a, b = r * n0 / ranks, (r + 1) * n0 / ranks
        if nodes % 2:  # stencils start at round(u) - (n-1)/2, u in [a, b)
            low, high = math.floor(a + 0.5), math.ceil(b + 0.5) - 1
        else:  # at floor(u) - n/2 + 1
            low, high = math.floor(a), math.ceil(b) - 1
        first = low - (nodes - 1) // 2
        # slabs.plane_arc: nodes counted in [-n0//2, n0 - n0//2) from the
        # middle of the slab
        middle = (planes[r] + planes[r + 1]) // 2
        reached = range(first, first + high - low + nodes)
        relative = [(p - middle + n0 // 2) % n0 - n0 // 2 for p in reached]
        span = range(min(relative), max(relative) + 1)
        buffers.append([owner[(middle + k) % n0] for k in span])
    reach = cutoff / (n_atoms / density) ** (1.0 / 3.0)
    ghost_bytes = (3 + channels) * dtype_bytes * n_atoms
    # + the ghost counts (int64) and all_reduce of the total charge, the energy and
    # (backward) the cell gradient
    small = (ranks - 1) * (PUBLISHED + 8) + _ring(8 * (channels + 10), ranks)
    results = []
    for r in range(ranks):
        out = sum(owner != r for owner in buffers[r])
        back = sum(buffers[s].count(r) for s in range(ranks) if s != r)
        slab, band = planes[r + 1] - planes[r], rows[r + 1] - rows[r]
        transpose = slab * (n1 - band) + band * (n0 - slab)
        ghosts = sum(_near(r, s, ranks, reach) + _near(s, r, ranks, reach)
                     for s in range(ranks) if s != r)  # fmt: skip
        results.append({
            "halo": (out + back) * n1 * n2 * dtype_bytes * channels,
            "transpose": transpose * (n2 // 2 + 1) * 2 * dtype_bytes * channels,
            "ghosts": ghosts * ghost_bytes,
            "small": small,
        })  # fmt: skip
    mean = {key: sum(r[key] for r in results) / ranks for key in KINDS}
    mean["total"] = sum(mean.values())
    mean["max"] = max(sum(r.values()) for r in results)
    return mean


class Traffic:
    """Bytes this rank sends to other ranks through the collectives while
    ``on``, by kind (told apart by shape: halo planes 4-D, ghost rows 2-D, the
    transpose flat floating point, counts integers)."""

    def __init__(self):
        self.bytes, self.on = dict.fromkeys(KINDS, 0), False
        for name in ("all_to_all_single", "all_reduce", "all_gather"):
            setattr(dist, name, self._counted(name, getattr(dist, name)))

    def _counted(self, name, collective):
        def counted(*args, **kwargs):
            if self.on:
                kind, nbytes = self._sent(name, args, kwargs.get("group"))
                self.bytes[kind] += nbytes
            return collective(*args, **kwargs)

        return counted

    @staticmethod
    def _sent(name, args, group):
        size = dist.get_world_size(group)
        if name == "all_reduce":
            return "small", _ring(args[0].numel() * args[0].element_size(), size)
        if name == "all_gather":
            return "small", (size - 1) * args[1].numel() * args[1].element_size()
        rows = args[1]  # (output, input, output splits, input splits)
        splits = args[3] if len(args) > 3 else [rows.shape[0] // size] * size
        row = math.prod(rows.shape[1:]) * rows.element_size()
        kind = {1: "transpose", 2: "ghosts"}.get(rows.dim(), "halo")
        kind = kind if rows.is_floating_point() else "small"
        return kind, row * (sum(splits) - splits[dist.get_rank(group)])


def _rss(key: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in bytes; without
    /proc, ``ru_maxrss`` (the parent's peak included)."""
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as handle:
            lines = [line.split() for line in handle if line.startswith(key + ":")]
        return 1024 * int(lines[0][1])
    return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _arrays(module, charges, cell, positions) -> dict:
    """Bytes of this rank's main arrays in one call (one charge channel)."""
    with torch.no_grad():
        step = module._step(charges, cell, positions, None)
        pairs = module._rank_pairs(step, charges, positions, None)
    (n0, n1, n2), r = step.layout.shape, step.layout.rank
    planes, rows = step.layout.planes, step.layout.rows
    return {
        "local atoms": len(positions) * 32,
        "ghosts": sum(step.ghosts.receive_counts) * 32,
        "buffer mesh": step.plan.shape[0] * n1 * n2 * 8,
        "owned slab": (planes[r + 1] - planes[r]) * n1 * n2 * 8,
        "band spectrum": n0 * (rows[r + 1] - rows[r]) * (n2 // 2 + 1) * 16,
        "kernel band": step.kernel.numel() * step.kernel.element_size(),
        "pairs": len(pairs.indices) * 24,
    }


def _energy_step(energy, charges, cell, positions):
    """``energy(charges, cell, positions)`` + backward to positions and cell."""

    def step():
        p = positions.clone().requires_grad_(True)
        c = cell.clone().requires_grad_(True)
        value = energy(charges, c, p)
        value.backward()
        return value.item()

    return step


def _timed(step, warmup, repeat):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        dist.barrier()
        start = time.perf_counter()
        step()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return times


def worker(rank, size, directory, options):
    rss_start = _rss("VmRSS")
    keep_freed_memory()  # as an MD program would: no page faults every step
    torch.set_num_threads(options["threads"])
    dist.init_process_group("gloo", init_method=f"file://{directory}/store",
                            rank=rank, world_size=size)  # fmt: skip
    try:
        traffic, cutoff = Traffic(), options["cutoff"]
        positions, charges, cell = system(options["n_atoms"])
        ids = torch.arange(len(positions))[rank::size]
        positions, charges = migrate(positions[ids], charges[ids], cell=cell)
        model = calculator(options)
        module = DistributedCalculator(model, cutoff)
        step = _energy_step(module.energy, charges, cell, positions)
        result = {"arrays": _arrays(module, charges, cell, positions)}
        traffic.on = True
        result["energy"] = step()
        traffic.on = False
        result["sent"], result["mesh"] = traffic.bytes, model._mesh_size(cell)
        if options["time"]:
            result["times"] = _timed(step, options["warmup"], options["repeat"])
            # an MD step between neighbour-list updates: the pairs kept (skin 1 Å)
            plan = module.pair_plan(cell, positions, skin=1.0)

            def kept_energy(q, c, p):
                return module.energy(q, c, p, pairs=plan)

            kept = _energy_step(kept_energy, charges, cell, positions)
            result["kept_times"] = _timed(kept, options["warmup"], options["repeat"])
        result["rss_growth"] = _rss("VmHWM") - rss_start
        if size == 1:  # the single-process calculator, on the same atoms

            def energy(q, c, p):
                return model.energy(q, c, p, *compute_neighbors(p, c, cutoff))

            single = _energy_step(energy, charges, cell, positions)
            result["single_energy"] = single()
            result["single_times"] = _timed(single, options["warmup"], options["repeat"])  # fmt: skip
            pairs, _, shifts = compute_neighbors(positions, cell, cutoff,
                                                 return_shifts=True)  # fmt: skip

            def kept_single(q, c, p):
                distances = pair_distances(p, c, pairs, shifts)
                return model.energy(q, c, p, pairs, distances)

            kept = _energy_step(kept_single, charges, cell, positions)
            result["single_kept_times"] = _timed(kept, options["warmup"], options["repeat"])  # fmt: skip
        Path(directory, f"{rank}.json").write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(size: int, options: dict) -> list:
    """Every rank's results of ``worker`` on ``size`` spawned processes."""
    with tempfile.TemporaryDirectory() as directory:
        torch.multiprocessing.spawn(worker, args=(size, directory, options),
                                    nprocs=size, join=True)  # fmt: skip
        return [json.loads(Path(directory, f"{r}.json").read_text())
                for r in range(size)]  # fmt: skip


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:9.2f}"


def measure(n_atoms: int, args) -> dict:
    keys = ("smearing", "mesh_spacing", "nodes", "mesh", "cutoff", "warmup", "repeat")
    options = {key: getattr(args, key) for key in keys} | {"n_atoms": n_atoms}
    runs = {size: run_ranks(size, {**options, "time": size in args.ranks,
                                   "threads": max(1, args.threads // size)})
            for size in sorted({1, *args.ranks, *args.memory_ranks})}  # fmt: skip
    one, row = runs[1][0], {"n_atoms": n_atoms, "ranks": {}, "memory": {}}
    seconds = statistics.median(one["single_times"])
    kept_single = statistics.median(one["single_kept_times"])
    row.update(mesh=one["mesh"], single_s=seconds, single_energy=one["single_energy"],
               single_kept_s=kept_single)  # fmt: skip
    row["traffic"] = {}
    print(f"\nN {n_atoms}  mesh {one['mesh']}  single process ({args.threads} "
          f"threads) {1e3 * seconds:.1f} ms, pairs kept {1e3 * kept_single:.1f} ms\n"
          f"    P threads   step ms  single/step  kept ms  single/kept"
          f"        dE  atoms  ghosts (largest rank)")  # fmt: skip
    for size in args.ranks:
        step = statistics.median(runs[size][0]["times"])
        kept = statistics.median(runs[size][0]["kept_times"])
        error = abs(runs[size][0]["energy"] / one["single_energy"] - 1.0)
        atoms = [max(r["arrays"][k] // 32 for r in runs[size]) for k in
                 ("local atoms", "ghosts")]  # fmt: skip
        print(f"{size:5d} {max(1, args.threads // size):7d} {1e3 * step:9.1f}"
              f" {seconds / step:12.2f} {1e3 * kept:8.1f} {kept_single / kept:12.2f}"
              f" {error:9.1e} {atoms[0]:6d} {atoms[1]:7d}")  # fmt: skip
        row["ranks"][size] = {"step_s": step, "times_s": runs[size][0]["times"],
                              "kept_s": kept, "energy_rel_error": error}  # fmt: skip
    names = [*one["arrays"], "sum", "RSS growth"]
    print("    P  MB per rank (largest rank): " + ", ".join(names))
    for size in sorted({1, *args.memory_ranks}):
        memory = {k: max(r["arrays"][k] for r in runs[size]) for k in one["arrays"]}
        memory["sum"] = max(sum(r["arrays"].values()) for r in runs[size])
        memory["RSS growth"] = max(r["rss_growth"] for r in runs[size])
        ratio = {k: memory[k] / row["memory"].get(1, memory)[k] for k in names[-2:]}
        row["memory"][size] = {**memory, "ratio to P=1": ratio}
        print(f"{size:5d}" + "".join(_mb(v) for v in memory.values())
              + f"  ratio to P = 1: sum {ratio['sum']:.2f} RSS {ratio['RSS growth']:.2f}")  # fmt: skip
    print("    P  MB sent per rank per step:   model  measured  model/measured")
    for size in sorted(set(runs) - {1}):
        model = model_bytes(n_atoms, one["mesh"], size, args.cutoff, DENSITY,
                            args.nodes)  # fmt: skip
        sent = {k: sum(r["sent"][k] for r in runs[size]) / size for k in KINDS}
        sent["total"] = sum(sent.values())
        row["traffic"][size] = {"model": model, "measured": sent}
        for kind, value in sent.items():
            print(f"{size:5d} {kind:>26} {_mb(model[kind])} {_mb(value)}"
                  f" {model[kind] / max(value, 1e-30):9.3f}")  # fmt: skip
    return row


def paper(args) -> list:
    print("\nOn paper: 1 Å mesh (n = ceil(L)); MB sent per GPU per step, ms at "
          "NVLink (450 GB/s per GPU) and InfiniBand NDR200 (25 GB/s per GPU)\n"
          "        N    P     n0     halo  transpose    ghosts     total"
          "   NVLink ms    IB ms")  # fmt: skip
    rows = []
    for n_atoms in (10**6, 10**7, 10**8):
        edge = (n_atoms / DENSITY) ** (1.0 / 3.0)
        n = math.ceil(edge)
        for size in (8, 16, 32, 64):
            model = model_bytes(n_atoms, [n] * 3, size, args.cutoff, DENSITY,
                                args.nodes)  # fmt: skip
            note = "pencils" if size > n else ""
            if not note and (n / size < args.nodes or edge / size < args.cutoff):
                note = "thin"
            times = {k: model["total"] / v for k, v in BANDWIDTHS.items()}
            print(f"{n_atoms:9.0e} {size:4d} {n:6d}"
                  + "".join(_mb(model[k]) + " " for k in ("halo", "transpose",
                                                          "ghosts", "total"))
                  + f"{1e3 * times['NVLink']:11.3f} {1e3 * times['IB']:8.2f}  {note}")  # fmt: skip
            rows.append({"n_atoms": n_atoms, "ranks": size, "mesh": [n] * 3,
                         "model": model, "seconds": times, "note": note})  # fmt: skip
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in [("--sizes", [32768]), ("--ranks", [1, 2]),
                          ("--memory-ranks", [1, 2, 4]), ("--mesh", None)]:  # fmt: skip
        parser.add_argument(flag, type=int, nargs="+", default=default)
    cores = len(os.sched_getaffinity(0))
    for flag, default in [("--threads", cores), ("--repeat", 5), ("--warmup", 1),
                          ("--nodes", 5)]:  # fmt: skip
        parser.add_argument(flag, type=int, default=default)
    for flag in ("--smearing", "--mesh-spacing", "--cutoff"):
        parser.add_argument(flag, type=float, default=8.0 if "cut" in flag else 2.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"# torch {torch.__version__}, gloo, float64, P3M σ {args.smearing}, "
          f"spacing {args.mesh_spacing}, mesh {args.mesh or 'from spacing'}, "
          f"{args.nodes} nodes, cutoff {args.cutoff}, {args.threads} threads")  # fmt: skip
    rows = [measure(n, args) for n in args.sizes]
    result = {"options": vars(args), "measured": rows, "paper": paper(args)}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
