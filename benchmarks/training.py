"""Benchmark of a training step with forces in the loss (second derivatives).

Rock salt with the fixed parameters of ``calculators.py``; the charges are scaled by
a trained parameter ``w`` and the step is

    E = Σ q V (or calculator.energy), F = −∂E/∂r (create_graph=True),
    loss = E² + Σ F², loss.backward()

With ``--stress`` the cell gradient ``σ = ∂E/∂A`` joins the loss (``+ Σ σ²``).
Distances come from plain PyTorch for every implementation (so only the calculators
differ), or with ``--own-distances`` from ``torchpme.neighbors.pair_distances``.
``--other PYTHON`` runs the same step with the ``torchpme`` of another interpreter
(e.g. torch-pme 0.5 in its own virtual environment: its potentials path only), each
case in a process of its own, alternated ``--rounds`` times, fastest median kept.

    python benchmarks/training.py --sizes 4096 --other /path/to/other-venv/bin/python
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def run_case(
    method: str, size: int, path: str, own: bool, stress: bool, repeat: int
) -> dict:
    """Median seconds of ``repeat`` training steps (after one warm-up)."""
    import torch
    from _systems import neighbors, rocksalt
    from calculators import build

    positions, charges, fixed_cell = rocksalt(size, torch.float64)
    calculator, cutoff = build(method, torch.float64)
    indices, shifts = neighbors(positions, fixed_cell, cutoff)
    shifts = shifts.to(torch.float64)
    weight = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    if own:
        from torchpme.neighbors import pair_distances

    def distances_of(pos, cell):
        if own:
            return pair_distances(pos, cell, indices, shifts)
        vectors = pos[indices[:, 1]] + shifts @ cell - pos[indices[:, 0]]
        return torch.linalg.norm(vectors, dim=1)

    def step():
        pos = positions.clone().requires_grad_(True)
        cell = fixed_cell.clone().requires_grad_(stress)
        q = charges * weight
        distances = distances_of(pos, cell)
        if path == "energy":
            energy = calculator.energy(q, cell, pos, indices, distances)
        else:
            energy = torch.sum(q * calculator(q, cell, pos, indices, distances))
        inputs = (pos, cell) if stress else (pos,)
        derivatives = torch.autograd.grad(energy, inputs, create_graph=True)
        loss = energy.square() + sum(d.square().sum() for d in derivatives)
        loss.backward()

    step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"time_s": statistics.median(times)}


def measure(python: str, case: list, repeat: int) -> dict:
    command = [python, __file__, "--case", json.dumps(case), "--repeat", str(repeat)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pme", "p3m"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[4096])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--own-distances", action="store_true")
    parser.add_argument("--stress", action="store_true", help="the cell gradient too")
    parser.add_argument("--other", help="python of another torchpme (potentials path)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = run_case(*json.loads(args.case), args.repeat)
        print(json.dumps(result))
        return
    rows = []
    print(f"{'method':6} {'N':>7} {'potentials ms':>14} {'energy ms':>10}", end="")
    print(f" {'other ms':>9} {'x (energy)':>10}" if args.other else "")
    for method in args.methods:
        for size in args.sizes:
            best = {}
            for _ in range(args.rounds):
                runs = [("potentials", sys.executable), ("energy", sys.executable)]
                if args.other:
                    runs.append(("other", args.other))
                for name, python in runs:
                    path = "potentials" if name == "other" else name
                    case = [method, size, path, args.own_distances, args.stress]
                    result = measure(python, case, args.repeat)
                    if "error" in result:
                        best[name] = result
                        continue
                    old = best.get(name, {}).get("time_s", float("inf"))
                    best[name] = {"time_s": min(old, result["time_s"])}
            rows.append({"method": method, "size": size, **best})
            cells = [
                f"{1e3 * best[name]['time_s']:>{width}.1f}"
                if "time_s" in best.get(name, {})
                else f"{'failed':>{width}}"
                for name, width in (("potentials", 14), ("energy", 10))
            ]
            line = f"{method:6} {size:7d} {cells[0]} {cells[1]}"
            if args.other and "time_s" in best.get("other", {}):
                ratio = best["other"]["time_s"] / best["energy"]["time_s"]
                line += f" {1e3 * best['other']['time_s']:9.1f} {ratio:10.2f}"
            print(line, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
