"""Benchmark of the tuners: wall time of ``tune_pme`` and ``tune_p3m``.

Builds a rock-salt supercell (a = 5.64 Å, 8 m³ atoms, 4096 by default, atoms
displaced by 0.1 Å), its neighbour list (minimum image, not timed), and times
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

import numpy as np
import torch

LATTICE = 5.64


def rocksalt(n_atoms: int, seed: int = 0):
    """Positions ``(N, 3)``, charges ``(N, 1)`` and cubic cell of a NaCl supercell."""
    repeat = round((n_atoms / 8) ** (1 / 3))
    if 8 * repeat**3 != n_atoms:
        raise ValueError(f"n_atoms must be 8 m³, got {n_atoms}")
    corners = np.array(
        [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
    )
    signs = np.array([(-1.0) ** int(c.sum()) for c in corners])
    cells = np.array(
        [
            [i, j, k]
            for i in range(repeat)
            for j in range(repeat)
            for k in range(repeat)
        ],
        dtype=float,
    )
    positions = (cells[:, None, :] + 0.5 * corners[None]).reshape(-1, 3) * LATTICE
    positions += 0.1 * np.random.default_rng(seed).normal(size=positions.shape)
    charges = np.tile(signs, len(cells))[:, None]
    cell = np.eye(3) * LATTICE * repeat
    return (
        torch.tensor(positions),
        torch.tensor(charges),
        torch.tensor(cell),
    )


def neighbors(positions: torch.Tensor, box: float, cutoff: float):
    """Half neighbour list of a cubic box by the minimum image (cutoff < box/2)."""
    if not cutoff < box / 2:
        raise ValueError("the minimum image needs cutoff < box / 2")
    pairs, distances = [], []
    n_atoms = len(positions)
    for start in range(0, n_atoms, 512):
        block = positions[start : start + 512]
        vectors = positions[None, :, :] - block[:, None, :]
        vectors -= box * torch.round(vectors / box)
        r = torch.linalg.norm(vectors, dim=-1)
        i, j = torch.nonzero(r < cutoff, as_tuple=True)
        i = i + start
        keep = i < j
        pairs.append(torch.stack([i[keep], j[keep]], dim=1))
        distances.append(r[i[keep] - start, j[keep]])
    return torch.cat(pairs), torch.cat(distances)


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


def evaluate(name: str, result: dict, positions, charges, cell, indices, distances):
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
        vectors = pos[indices[:, 1]] - pos[indices[:, 0]]
        vectors = vectors - float(cell[0, 0]) * torch.round(
            vectors.detach() / cell[0, 0]
        )
        dist = torch.linalg.norm(vectors, dim=1)
        start = time.perf_counter()
        energy = (charges * calculator(charges, cell, pos, indices, dist)).sum()
        forces = -torch.autograd.grad(energy, pos)[0]
        if repetition > 0:
            samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2], forces


def reference_forces(positions, charges, cell):
    """Forces of a converged PME (σ 1.6 Å, 0.3 Å spacing, 7 nodes, 12 Å cutoff)."""
    import torchpme

    box = float(cell[0, 0])
    indices, _ = neighbors(positions, box, min(12.0, 0.49 * box))
    pos = positions.clone().requires_grad_(True)
    vectors = pos[indices[:, 1]] - pos[indices[:, 0]]
    vectors = vectors - box * torch.round(vectors.detach() / box)
    potential = torchpme.CoulombPotential(smearing=1.6)
    calculator = torchpme.PMECalculator(potential, 0.3, 7).to(torch.float64)
    energy = (
        charges
        * calculator(charges, cell, pos, indices, torch.linalg.norm(vectors, dim=1))
    ).sum()
    return -torch.autograd.grad(energy, pos)[0]


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
    indices, distances = neighbors(positions, box, args.cutoff)
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
    for accuracy in args.accuracy:
        for name in ("tune_pme", "tune_p3m"):
            ours = tune_once(name, *system, accuracy)
            seconds, forces = evaluate(name, ours, *system_without_cutoff(system))
            line = (
                f"{name:8s} {accuracy:.0e}: tuned in {ours['elapsed_s']:6.2f} s, "
                f"smearing {ours['smearing']:.3f}, {ours['params']}, "
                f"energy+forces {1e3 * seconds:.1f} ms, "
                f"force error {rms(forces, reference):.1e}"
            )
            if args.other:
                other = run_other(args, name, accuracy)
                other_seconds, other_forces = evaluate(
                    name, other, *system_without_cutoff(system)
                )
                line += (
                    f" | other: tuned in {other['elapsed_s']:6.2f} s "
                    f"({other['elapsed_s'] / ours['elapsed_s']:.0f}x), "
                    f"{other['params']}, energy+forces {1e3 * other_seconds:.1f} ms, "
                    f"force error {rms(other_forces, reference):.1e}"
                )
            print(line, flush=True)


def system_without_cutoff(system):
    positions, charges, cell, _, indices, distances = system
    return positions, charges, cell, indices, distances


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
