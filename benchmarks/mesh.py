"""Benchmark of the mesh building blocks: compute_weights + points_to_mesh +
mesh_to_points, forward and backward.

Runs with whichever ``torchpme`` the interpreter imports, so the same script
measures another implementation with the same API (e.g. torch-pme 0.5 installed in
a separate virtual environment). Each case runs in a fresh subprocess so that its
peak memory (growth of the resident set) is its own.

    python benchmarks/mesh.py                       # this library
    python benchmarks/mesh.py --other /path/to/venv/bin/python   # both, with ratios
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from _compare import comparison, write_json


def run_case(n_atoms: int, mesh: int, nodes: int, method: str, repeat: int) -> dict:
    import torch

    import torchpme

    torch.manual_seed(0)
    dtype = torch.float64
    length = 40.0
    cell = length * torch.eye(3, dtype=dtype)
    positions = length * torch.rand(n_atoms, 3, dtype=dtype)
    charges = torch.randn(n_atoms, 1, dtype=dtype)
    probe = torch.randn(n_atoms, 1, dtype=dtype)
    ns = torch.tensor([mesh, mesh, mesh])
    interpolator = torchpme.lib.MeshInterpolator(cell, ns, nodes, method=method)

    def step():
        pos = positions.clone().requires_grad_(True)
        q = charges.clone().requires_grad_(True)
        interpolator.compute_weights(pos)
        density = interpolator.points_to_mesh(q)
        values = interpolator.mesh_to_points(density)
        (values * probe).sum().backward()

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "time_s": statistics.median(times),
        "peak_growth_mb": (peak - baseline) / 1024.0,
        "peak_rss_mb": peak / 1024.0,
    }


CASES = [
    (32768, 128, 4, "Lagrange"),
    (32768, 128, 6, "Lagrange"),
    (32768, 128, 4, "P3M"),
]


def measure(python: str, case, repeat: int) -> dict:
    command = [
        python,
        __file__,
        "--case",
        json.dumps(list(case)),
        "--repeat",
        str(repeat),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="python of another implementation to compare")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case), repeat=args.repeat)))
        return
    rows = []
    print(f"{'case':32} {'time ms':>9} {'peak MB':>9}", end="")
    print(
        f" {'other ms':>9} {'other MB':>9} {'speedup':>8} {'mem ratio':>9}"
        if args.other
        else ""
    )
    for case in CASES:
        ours = measure(sys.executable, case, args.repeat)
        row = {"case": case, "ours": ours}
        line = f"{case!s:32} {1e3 * ours['time_s']:9.1f} {ours['peak_growth_mb']:9.0f}"
        if args.other:
            other = measure(args.other, case, args.repeat)
            row["other"] = other
            line += comparison(ours, other)
        print(line, flush=True)
        rows.append(row)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
