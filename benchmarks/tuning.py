"""Benchmark of the tuners: wall time of ``tune_pme`` and ``tune_p3m``.

Builds a rock-salt supercell (a = 5.64 Å, 8 m³ atoms, 4096 by default, atoms
displaced by 0.1 Å), its neighbour list (minimum image, not timed), and times
each tuner once per accuracy, printing the time and the parameters chosen.

    python benchmarks/tuning.py
    python benchmarks/tuning.py --n-atoms 4096 --accuracy 1e-3 1e-4 --cutoff 6.0
"""

import argparse
import time

import numpy as np
import torch

from torchpme.tuning import tune_p3m, tune_pme

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-atoms", type=int, default=4096)
    parser.add_argument("--cutoff", type=float, default=6.0)
    parser.add_argument("--accuracy", type=float, nargs="+", default=[1e-3, 1e-4])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    positions, charges, cell = rocksalt(args.n_atoms)
    box = float(cell[0, 0])
    indices, distances = neighbors(positions, box, args.cutoff)
    print(
        f"rock salt N = {args.n_atoms}, box {box:.2f} Å, cutoff {args.cutoff} Å, "
        f"{len(indices)} pairs, {torch.get_num_threads()} threads"
    )
    for accuracy in args.accuracy:
        for tune in (tune_pme, tune_p3m):
            start = time.perf_counter()
            smearing, params, timing = tune(
                charges,
                cell,
                positions,
                args.cutoff,
                indices,
                distances,
                accuracy=accuracy,
            )
            elapsed = time.perf_counter() - start
            print(
                f"{tune.__name__:8s} accuracy {accuracy:.0e}: tuned in {elapsed:6.2f} s"
                f"  smearing {smearing:.3f}, {params}, "
                f"{1e3 * timing:.1f} ms per energy+forces"
            )


if __name__ == "__main__":
    main()
