"""Benchmark of the tuners: wall time of ``tune_pme`` and ``tune_p3m``.

Builds a rock-salt supercell (a = 5.64 Å, 8 m³ atoms, 4096 by default, atoms
displaced by 0.1 Å), its neighbour list (vesin when installed, else the minimum
image; not timed), and times
each tuner once per accuracy, printing the time, the parameters chosen and the
energy + forces time of those parameters. ``--other PYTHON`` runs the same tuners of
another implementation of the API (e.g. torch-pme 0.5 in its own venv) in that
interpreter and evaluates both picks with this interpreter's calculators, so that
the ratios come from one run and the picks are compared on the same code.

    python benchmarks/tuning.py
    python benchmarks/tuning.py --n-atoms 4096 --accuracy 1e-3 1e-4 --cutoff 6.0
    python benchmarks/tuning.py --threads 1 --other /path/to/venv/bin/python
"""

import argparse
import json
import subprocess
import time

import torch
from _systems import neighbors, pair_distances, reference_forces, rocksalt


def tune_once(
    name: str, positions, charges, cell, cutoff, indices, distances, accuracy
):
    """Run one tuner; wall time, smearing, parameters and the tuner's own timing."""
    import torchpme.tuning

    tune = getattr(torchpme.tuning, name)
    start = time.perf_counter()
    smearing, params, timing = tune(
        charges, cell, positions, cutoff, indices, distances, accuracy=accuracy
    )
    return {
        "elapsed_s": time.perf_counter() - start,
        "smearing": smearing,
        "params": params,
        "tuner_timing_s": timing,
    }


def evaluate(name: str, result: dict, positions, charges, cell, indices, shifts):
    """Median seconds of energy + forces of the tuned parameters, with this
    interpreter's torchpme (the same code for the picks of both tuners), and the
    forces."""
    import torchpme

    build = torchpme.PMECalculator if name == "tune_pme" else torchpme.P3MCalculator
    potential = torchpme.CoulombPotential(smearing=result["smearing"])
    calculator = build(potential, **result["params"]).to(torch.float64)
    samples = []
    for repetition in range(6):
        pos = positions.clone().requires_grad_(True)
        dist = pair_distances(pos, cell, indices, shifts)
        start = time.perf_counter()
        energy = (charges * calculator(charges, cell, pos, indices, dist)).sum()
        forces = -torch.autograd.grad(energy, pos)[0]
        if repetition > 0:
            samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2], forces


def rms(forces, reference) -> float:
    return float((forces - reference).pow(2).sum(1).mean().sqrt())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-atoms", type=int, default=4096)
    parser.add_argument("--cutoff", type=float, default=6.0)
    parser.add_argument("--accuracy", type=float, nargs="+", default=[1e-3, 1e-4])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--other", help="python of another implementation to compare")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one tuner, JSON output
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    positions, charges, cell = rocksalt(args.n_atoms)
    box = float(cell[0, 0])
    indices, shifts = neighbors(positions, cell, args.cutoff)
    distances = pair_distances(positions, cell, indices, shifts)
    system = (positions, charges, cell, args.cutoff, indices, distances)
    if args.only:
        result = tune_once(args.only, *system, args.accuracy[0])
        print(json.dumps(result))
        return
    print(
        f"rock salt N = {args.n_atoms}, box {box:.2f} Å, cutoff {args.cutoff} Å, "
        f"{len(indices)} pairs, {torch.get_num_threads()} threads"
    )
    reference = reference_forces(positions, charges, cell)
    evaluated = (positions, charges, cell, indices, shifts)
    for accuracy in args.accuracy:
        for name in ("tune_pme", "tune_p3m"):
            ours = tune_once(name, *system, accuracy)
            seconds, forces = evaluate(name, ours, *evaluated)
            line = (
                f"{name:8s} {accuracy:.0e}: tuned in {ours['elapsed_s']:6.2f} s, "
                f"smearing {ours['smearing']:.3f}, {ours['params']}, "
                f"energy+forces {1e3 * seconds:.1f} ms, "
                f"force error {rms(forces, reference):.1e}"
            )
            if args.other:
                other = run_other(args, name, accuracy)
                other_seconds, other_forces = evaluate(name, other, *evaluated)
                line += (
                    f" | other: tuned in {other['elapsed_s']:6.2f} s "
                    f"({other['elapsed_s'] / ours['elapsed_s']:.0f}x), "
                    f"{other['params']}, energy+forces {1e3 * other_seconds:.1f} ms, "
                    f"force error {rms(other_forces, reference):.1e}"
                )
            print(line, flush=True)


def run_other(args, name: str, accuracy: float) -> dict:
    command = [
        args.other,
        __file__,
        "--n-atoms",
        str(args.n_atoms),
        "--cutoff",
        str(args.cutoff),
        "--accuracy",
        str(accuracy),
        "--only",
        name,
    ]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
