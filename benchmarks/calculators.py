"""Benchmark of Ewald / PME / P3M: energy + forces (+ stress) of rock-salt crystals.

For each case (method, N, dtype) it builds a rock-salt supercell (a = 5.64 Å, atoms
displaced by 0.1 Å) and its neighbour list (vesin, not timed), and reports medians
of ``forward + backward`` of the energy with respect to the positions (``--stress``
adds the cell):

* ``ms``: the whole step, distances from positions in plain PyTorch (the same code
  for every implementation);
* ``lib ms``: the calculator's own part (forward + backward to positions and given
  distances);
* ``own-d ms``: the whole step with the implementation's own distance function
  where it has one (``torchpme.neighbors.pair_distances``);
* ``MB``: peak memory growth of the process over the runs (first call included);
* ``rel err``: with ``--accuracy``, the RMS force error against a converged
  reference (fine PME, N ≤ 4096 only).

With ``--other``, ``own-d x`` is the other implementation's whole step (plain
distances: torch-pme has no distance function) over ours with our distance
function, and ``--rounds R`` alternates the two processes ``R`` times per case and
keeps the fastest median of each (this VM's speed drifts by up to 2× over
minutes; alternating keeps one slow phase from deciding a ratio).

``--device cuda`` runs every case on that device (neighbour lists are built on
the CPU, times are synchronised, ``MB`` is the peak device memory PyTorch
allocated). ``--cuda-graph`` adds ``graph ms``: our own-distances step (PME/P3M on
a fixed mesh) captured once in a CUDA graph and replayed, its forces checked
against the eager step; ``graph x`` is the other implementation's eager step over
it. ``--keep-freed-memory`` runs both implementations with glibc's allocator told to
keep freed memory (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``MALLOC_MMAP_THRESHOLD_``: what ``torchpme.keep_freed_memory()`` sets at run time).

Our steps hold what an MD step reuses explicitly where the implementation offers
it (torchpme: the neighbour list as a ``PairList``, and the mesh filter of the
unchanged cell passed as ``mesh_filter``; see :func:`explicit_reuse`).

Parameters are the issue's fixed ones, or ``--params`` JSON, or tuned by
``--target``. It uses whichever ``torchpme`` the interpreter imports, so
``--other PYTHON`` runs the same cases with another implementation of the same API
(e.g. torch-pme 0.5 in its own venv) and prints the ratios measured in one run.

    python benchmarks/calculators.py --sizes 512 4096 --json results.json
    python benchmarks/calculators.py --other /path/to/venv/bin/python
    python benchmarks/calculators.py --methods p3m --target 1e-4 --accuracy
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _compare import comparison, write_json
from _systems import LATTICE, neighbors, pair_distances, reference_forces, rocksalt

# the environment of the measured processes (see --keep-freed-memory)
ENVIRONMENT = dict(os.environ)
KEEP_FREED_MEMORY = {
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(1 << 28),
    "MALLOC_MMAP_THRESHOLD_": str(1 << 25),
}

# fixed parameters (issue 5): cutoff, smearing, k-space parameter, nodes
PARAMETERS = {
    "pme": {"cutoff": 8.0, "smearing": 1.6, "mesh_spacing": 0.75, "nodes": 6},
    "p3m": {"cutoff": 10.0, "smearing": 2.2, "mesh_spacing": 1.5, "nodes": 5},
    "ewald": {"cutoff": 8.0, "smearing": 1.6, "lr_wavelength": 1.1},
}


def build(method: str, dtype, parameters=None, n_atoms: int = 0):

    import torchpme

    p = parameters or PARAMETERS[method]
    potential = torchpme.CoulombPotential(smearing=p["smearing"])
    if method == "ewald":
        calculator = torchpme.EwaldCalculator(
            potential, lr_wavelength=p["lr_wavelength"]
        )
    elif method == "pme":
        calculator = torchpme.PMECalculator(
            potential, mesh_spacing=p["mesh_spacing"], interpolation_nodes=p["nodes"]
        )
    else:
        calculator = torchpme.P3MCalculator(
            potential, mesh_spacing=p["mesh_spacing"], interpolation_nodes=p["nodes"]
        )
    if "mesh_density" in p:
        # any mesh size, not only powers of two (torchpme's fixed_mesh)
        size = round(p["mesh_density"] * LATTICE * round((n_atoms / 8) ** (1 / 3)))
        calculator.fixed_mesh = [size, size, size]
    return calculator.to(dtype=dtype), p["cutoff"]


def _resident_kb(reset_peak: bool = False, peak: bool = False) -> float:
    """Resident memory of this process (or its peak since the last reset), in kB.

    Resetting the peak (Linux ``clear_refs``) keeps the setup, e.g. the neighbour
    search, out of the measured growth."""
    if reset_peak:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    field = "VmHWM:" if peak else "VmRSS:"
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return float(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def compile_calculator(calculator, cell, energy=False):
    """``torch.compile(fullgraph=True)`` of a PME/P3M calculator on its fixed mesh
    (torchpme only: the fixed mesh removes the host read of the cell), or of its
    ``energy`` method."""
    import torch

    from torchpme.lib import get_ns_mesh

    calculator.fixed_mesh = get_ns_mesh(cell, calculator.mesh_spacing).tolist()
    return torch.compile(calculator.energy if energy else calculator, fullgraph=True)


def energy_function(calculator, indices, energy=False, compiled=None, extra=None):
    """``(charges, cell, positions, distances) -> E``: ``Σ q · calculator(...)``,
    or with ``energy`` the calculator's own ``energy`` method (torchpme), whose
    backward pass reuses the mesh forward pass on every device. ``compiled``:
    what :func:`compile_calculator` made of it; ``extra``: keyword arguments of
    every call (see :func:`explicit_reuse`)."""
    import torch

    extra = extra or {}
    if energy:
        method = compiled if compiled is not None else calculator.energy
        return lambda q, cell, pos, dist: method(q, cell, pos, indices, dist, **extra)
    module = compiled if compiled is not None else calculator
    return lambda q, cell, pos, dist: torch.sum(
        q * module(q, cell, pos, indices, dist, **extra)
    )


def explicit_reuse(calculator, indices, shifts, cell, stress: bool, compiled: bool):
    """``(neighbors, extra)``: what an MD step reuses, held explicitly where the
    implementation offers it (torchpme: a ``PairList`` in place of the indices,
    and the mesh filter of the unchanged cell); else the indices and nothing."""
    try:
        from torchpme.neighbors import PairList
    except ImportError:
        return indices, {}
    if compiled:  # traced calls take tensors
        return indices, {}
    extra = {}
    # a strained cell (stress) changes the filter; a compiled call gets none
    if hasattr(calculator, "mesh_filter") and not stress and not compiled:
        extra["mesh_filter"] = calculator.mesh_filter(cell)
    return PairList(indices, shifts), extra


def cuda_graph_step(step, static, expected):
    """Capture ``step`` (which reads the positions in ``static``) in a CUDA graph:
    returns its replay and the largest force deviation from ``expected``, relative
    to the largest force."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capturing stream
        for _ in range(3):
            step(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step(static)
    graph.replay()
    torch.cuda.synchronize()
    deviation = (captured[0] + expected).abs().max() / expected.abs().max()
    return graph.replay, float(deviation)


def run_case(
    method: str,
    n_atoms: int,
    dtype_name: str,
    parameters,
    repeat: int,
    accuracy: bool,
    stress: bool,
    compiled: bool = False,
    device: str = "cpu",
    graph: bool = False,
    energy: bool = False,
):
    import torch

    dtype = getattr(torch, dtype_name)
    positions, charges, cell = rocksalt(n_atoms, dtype)
    calculator, cutoff = build(method, dtype, parameters, n_atoms)
    indices, shifts = neighbors(positions, cell, cutoff)
    positions, charges, cell, indices, shifts = (
        t.to(device) for t in (positions, charges, cell, indices, shifts)
    )
    calculator = calculator.to(device)
    compiled_function = None
    if compiled:
        compiled_function = compile_calculator(calculator, cell, energy)
    elif graph and not any(calculator.fixed_mesh):  # no host read of the cell
        from torchpme.lib import get_ns_mesh

        calculator.fixed_mesh = get_ns_mesh(cell, calculator.mesh_spacing).tolist()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated() / 1024.0
    else:
        baseline = _resident_kb(reset_peak=True)

    neighbors_held, extra = explicit_reuse(
        calculator, indices, shifts, cell, stress, compiled
    )
    our_energy = energy_function(
        calculator, neighbors_held, energy, compiled_function, extra
    )

    def step():
        pos = positions.clone().requires_grad_(True)
        cel = cell.clone().requires_grad_(stress)
        distances = pair_distances(pos, cel, indices, shifts)
        total = our_energy(charges, cel, pos, distances)
        inputs = (pos, cel) if stress else (pos,)
        return total, -torch.autograd.grad(total, inputs)[0]

    distances = pair_distances(positions, cell, indices, shifts)

    def library_step():
        # the calculator's own work: forward + backward to positions and distances
        pos = positions.clone().requires_grad_(True)
        dist = distances.clone().requires_grad_(True)
        total = our_energy(charges, cell, pos, dist)
        return torch.autograd.grad(total, (pos, dist))

    steps = {"time_s": step, "library_time_s": library_step}
    try:  # an implementation with its own differentiable distances (torchpme)
        from torchpme.neighbors import pair_distances as own_distances

        def own_distances_step(start=positions):
            pos = start.clone().requires_grad_(True)
            cel = cell.clone().requires_grad_(stress)
            if neighbors_held is indices:
                dist = own_distances(pos, cel, indices, shifts)
            else:
                dist = own_distances(pos, cel, neighbors_held)
            total = our_energy(charges, cel, pos, dist)
            return torch.autograd.grad(total, (pos, cel) if stress else (pos,))

        steps["own_distances_time_s"] = own_distances_step
    except ImportError:
        pass
    _, forces = step()  # warm-up
    deviation = graph_error = None
    if graph:  # a failed capture costs the graph column only, not the case
        try:
            replay, deviation = cuda_graph_step(own_distances_step, positions, forces)
            steps["graph_time_s"] = replay
        except Exception as error:
            graph_error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    times = {name: [] for name in steps}
    for function in steps.values():
        function()
    for _ in range(repeat):
        for name, function in steps.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    if cuda:  # device memory: the peak allocated by PyTorch
        peak = torch.cuda.max_memory_allocated() / 1024.0
    else:
        peak = _resident_kb(peak=True)
    result = {name: statistics.median(samples) for name, samples in times.items()}
    result["peak_growth_mb"] = (peak - baseline) / 1024.0
    if deviation is not None:
        result["graph_force_deviation"] = deviation
    if graph_error is not None:
        result["graph_error"] = graph_error
    if accuracy and n_atoms <= 4096:
        reference = reference_forces(positions.cpu(), charges.cpu(), cell.cpu())
        error = (forces.double().cpu() - reference).pow(2).sum(1).mean().sqrt()
        scale = reference.pow(2).sum(1).mean().sqrt()
        result["rms_force_error_rel"] = float(error / scale)
    return result


def measure(
    python: str,
    case: list,
    repeat: int,
    accuracy: bool,
    stress: bool,
    compiled: bool = False,
    device: str = "cpu",
    graph: bool = False,
    energy: bool = False,
) -> dict:
    command = [python, __file__, "--case", json.dumps(case), "--repeat", str(repeat)]
    command += ["--device", device]
    if compiled:
        command.append("--compile")
    if energy:
        command.append("--energy")
    if graph:
        command.append("--cuda-graph")
    if accuracy:
        command.append("--accuracy")
    if stress:
        command.append("--stress")
    output = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT)
    if output.returncode != 0:
        return {"error": output.stderr.strip().splitlines()[-1]}
    return json.loads(output.stdout.strip().splitlines()[-1])


def fastest(first: dict, second: dict) -> dict:
    """The faster of two measurements of one case, time by time (errors lose)."""
    if "error" in first:
        return second
    if "error" in second:
        return first
    result = dict(first)
    for key, value in second.items():
        if key.endswith("time_s"):
            result[key] = min(value, first.get(key, value))
    return result


def tuned_parameters(method: str, target: float, smooth: bool = False) -> dict:
    """Cutoff, smearing, mesh spacing and nodes reaching a relative RMS force error
    ``target`` on the N = 4096 crystal (``torchpme.tuning.tune_cutoff``; intensive
    quantities, so they serve every N of the same crystal). With ``smooth`` the
    tuner may pick any 5-smooth mesh, passed on as a mesh density."""
    import torch

    from torchpme import tuning

    positions, charges, cell = rocksalt(4096, torch.float64)
    scale = float(reference_forces(positions, charges, cell).pow(2).sum(1).mean())
    indices, shifts = neighbors(positions, cell, 10.0)
    distances = pair_distances(positions, cell, indices, shifts)
    tune = tuning.tune_p3m if method == "p3m" else tuning.tune_pme
    cutoff, smearing, params, _ = tuning.tune_cutoff(
        tune,
        charges,
        cell,
        positions,
        indices,
        distances,
        cutoffs=[5.0, 6.0, 7.0, 8.0, 10.0],
        accuracy=target * scale**0.5,
        **({"smooth_meshes": True} if smooth else {}),
    )
    result = {
        "cutoff": cutoff,
        "smearing": smearing,
        "mesh_spacing": params["mesh_spacing"],
        "nodes": params["interpolation_nodes"],
    }
    if "fixed_mesh" in params:
        result["mesh_density"] = params["fixed_mesh"][0] / float(cell[0, 0])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pme", "p3m"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 4096, 32768])
    parser.add_argument("--dtypes", nargs="+", default=["float64"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="measure force errors")
    parser.add_argument("--stress", action="store_true", help="also the cell gradient")
    parser.add_argument("--other", help="python of another implementation to compare")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile(fullgraph=True) our PME/P3M calculator (fixed mesh); "
        "the other implementation runs eagerly",
    )
    parser.add_argument(
        "--params",
        help="JSON parameters for every method instead of the fixed ones: cutoff, "
        "smearing, mesh_spacing, nodes, optionally mesh_density (mesh points per Å "
        "of box, any size: torchpme only)",
    )
    parser.add_argument(
        "--target",
        type=float,
        help="tune (ours) for this relative RMS force error instead of the fixed "
        "parameters; both implementations then run the tuned parameters",
    )
    parser.add_argument(
        "--smooth",
        action="store_true",
        help="with --target: let the tuner pick 5-smooth meshes (torchpme only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --other: alternate the two implementations this many times per "
        "case and keep the fastest median of each",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="run both implementations with the allocator keeping freed memory",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the calculations run (e.g. cuda): times are synchronised, MB "
        "is then the device memory PyTorch allocated",
    )
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="also time our PME/P3M step (fixed mesh) captured in a CUDA graph; "
        "the other implementation runs eagerly",
    )
    parser.add_argument(
        "--energy",
        action="store_true",
        help="our steps call calculator.energy (whose backward reuses the mesh "
        "forward pass on every device) instead of summing q · potentials",
    )
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case = json.loads(args.case)
        result = run_case(
            *case, args.repeat, args.accuracy, args.stress, args.compile, args.device,
            args.cuda_graph, args.energy,
        )  # fmt: skip
        print(json.dumps(result))
        return
    if args.keep_freed_memory:
        ENVIRONMENT.update(KEEP_FREED_MEMORY)
    tuned = {}
    if args.params:
        tuned = {method: json.loads(args.params) for method in args.methods}
    if args.target:
        for method in args.methods:
            tuned[method] = tuned_parameters(method, args.target, args.smooth)
            print(f"{method} tuned for {args.target:.0e}: {tuned[method]}", flush=True)
    rows = []
    header = (
        f"{'method':6} {'N':>7} {'dtype':8} {'ms':>9} {'lib ms':>8} {'own-d ms':>8}"
        f" {'MB':>7} {'rel err':>9}"
    )
    if args.other:
        header += (
            f" {'other ms':>9} {'other MB':>9} {'speedup':>8} {'mem':>6}"
            f" {'lib ms':>8} {'lib speedup':>11} {'own-d x':>8}"
        )
    if args.cuda_graph:
        header += f" {'graph ms':>9} {'graph dev':>9}"
        header += f" {'graph x':>8}" if args.other else ""
    print(header)
    for method in args.methods:
        for size in args.sizes:
            for dtype in args.dtypes:
                case = [method, size, dtype, tuned.get(method)]

                def ours_once(accuracy):
                    return measure(
                        sys.executable, case, args.repeat, accuracy, args.stress,
                        args.compile, args.device, args.cuda_graph, args.energy,
                    )  # fmt: skip

                def other_once():
                    return measure(
                        args.other, case, args.repeat, False, args.stress, False,
                        args.device,
                    )  # fmt: skip

                ours = ours_once(args.accuracy)
                other = None
                if args.other and "error" not in ours:
                    other = other_once()
                    for _ in range(args.rounds - 1):
                        ours = fastest(ours, ours_once(False))
                        other = fastest(other, other_once())
                row = {"case": case, "ours": ours}
                if "error" in ours:
                    print(f"{method:6} {size:7d} {dtype:8} failed: {ours['error']}")
                    continue
                line = (
                    f"{method:6} {size:7d} {dtype:8} {1e3 * ours['time_s']:9.1f}"
                    f" {1e3 * ours['library_time_s']:8.1f}"
                    f" {1e3 * ours.get('own_distances_time_s', float('nan')):8.1f}"
                    f" {ours['peak_growth_mb']:7.0f}"
                    f" {ours.get('rms_force_error_rel', float('nan')):9.1e}"
                )
                if other is not None:
                    row["other"] = other
                    line += comparison(ours, other)
                    if "library_time_s" in other:
                        ratio = other["library_time_s"] / ours["library_time_s"]
                        line += f" {1e3 * other['library_time_s']:8.1f} {ratio:11.2f}"
                    if "own_distances_time_s" in ours and "time_s" in other:
                        ratio = other["time_s"] / ours["own_distances_time_s"]
                        line += f" {ratio:8.2f}"
                if "graph_time_s" in ours:
                    line += f" {1e3 * ours['graph_time_s']:9.2f}"
                    line += f" {ours['graph_force_deviation']:9.1e}"
                    if other is not None and "time_s" in other:
                        line += f" {other['time_s'] / ours['graph_time_s']:8.2f}"
                elif "graph_error" in ours:
                    line += f" graph failed: {ours['graph_error']}"
                print(line, flush=True)
                rows.append(row)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
