"""Benchmark of charge equilibration and of probes (embedding).

``qeq``: a water-like random box (``N`` atoms, O/H-like electronegativities and
hardnesses, Gaussian widths 0.6/0.4 Å, 0.1 atoms/Å³), PME at fixed parameters.
Reported: the time of one PME energy step with its charge gradient, the time per
conjugate-gradient iteration of a cold solve (one PME call and the Gaussian pair
correction), its iterations and time to a relative residual of 1e-6, and over a
short trajectory (atoms displaced by 0.02 Å per step) the mean iterations without
and with the warm start.

``dense``: for the small sizes of ``--dense``, one solve with its gradient to the
electronegativities and positions, by conjugate gradients and by the dense
matrix (``solver="cg"``/``"dense"``), which sets ``QEQ_DENSE_ATOMS``.

``embed``: ``--mm`` point charges and ``--ml`` probes in the same box, the
potential and field at the probes by PME.

    python benchmarks/qeq.py --sizes 4096 32768 --steps 3 --dense 16 32 64 128 256
"""

import argparse
import math
import time

import numpy as np
import torch

from torchpme import CoulombPotential, PMECalculator
from torchpme.neighbors import compute_neighbors, pair_distances
from torchpme.probes import field_at, probe_neighbors
from torchpme.qeq import equilibrate

SMEARING, CUTOFF, SPACING, NODES = 1.5, 7.0, 0.8, 4
DENSITY = 0.1  # atoms per Å³, as liquid water


def water_like(n_atoms: int, seed: int = 0):
    """Random positions in a cube; a third O-like (χ 0.3, J 1.0, σ 0.6), the rest
    H-like (χ −0.15, J 1.2, σ 0.4), in units of e and Å."""
    rng = np.random.default_rng(seed)
    edge = (n_atoms / DENSITY) ** (1.0 / 3.0)
    positions = torch.tensor(rng.random((n_atoms, 3)) * edge)
    oxygen = torch.arange(n_atoms) % 3 == 0
    chi = torch.where(oxygen, 0.3, -0.15).double()
    hardness = torch.where(oxygen, 1.0, 1.2).double()
    widths = torch.where(oxygen, 0.6, 0.4).double()
    return positions, torch.eye(3, dtype=torch.float64) * edge, chi, hardness, widths


def _timed(function, repeat=1):
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def qeq_rows(size: int, steps: int):
    positions, cell, chi, hardness, widths = water_like(size)
    calculator = PMECalculator(CoulombPotential(smearing=SMEARING), SPACING, NODES)
    pairs, _ = compute_neighbors(positions, cell, CUTOFF, as_pair_list=True)
    distances = pair_distances(positions, cell, pairs)
    charges = (0.1 * torch.randn(size, 1, dtype=torch.float64)).requires_grad_(True)

    def energy_step():
        energy = calculator.energy(charges, cell, positions, pairs, distances)
        return torch.autograd.grad(energy, charges)

    step_time, _ = _timed(energy_step, 2)

    def solve(where, initial=None):
        dist = pair_distances(where, cell, pairs)
        return equilibrate(
            calculator, chi, hardness, widths, cell, where, pairs, dist,
            initial=initial, tolerance=1e-6,
        )  # fmt: skip

    cold_time, result = _timed(lambda: solve(positions))
    print(
        f"{size:7d} {1e3 * step_time:9.1f} {1e3 * cold_time / result.iterations:9.1f} "
        f"{result.iterations:6d} {cold_time:8.2f}",
        end="",
    )
    rng = np.random.default_rng(1)
    cold, warm, moved, previous = [], [], positions, result.charges.detach()
    for _ in range(steps):
        moved = moved + torch.tensor(rng.normal(scale=0.02, size=moved.shape))
        cold.append(solve(moved).iterations)
        again = solve(moved, previous)
        warm.append(again.iterations)
        previous = again.charges.detach()
    print(f" {np.mean(cold):8.1f} {np.mean(warm):8.1f}")


def dense_row(size: int):
    positions, cell, chi, hardness, widths = water_like(size)
    calculator = PMECalculator(CoulombPotential(smearing=SMEARING), SPACING, NODES)
    pairs, _, shifts = compute_neighbors(positions, cell, CUTOFF, return_shifts=True)
    times = []
    for solver in ("cg", "dense"):

        def solve_and_differentiate(solver=solver):
            where = positions.clone().requires_grad_(True)
            electronegativity = chi.clone().requires_grad_(True)
            dist = pair_distances(where, cell, pairs, shifts)
            result = equilibrate(
                calculator, electronegativity, hardness, widths, cell, where, pairs,
                dist, tolerance=1e-8, solver=solver,
            )  # fmt: skip
            loss = (result.charges**2).sum()
            return torch.autograd.grad(loss, (electronegativity, where))

        times.append(_timed(solve_and_differentiate, 3)[0])
    print(f"dense: N {size:5d}  cg {1e3 * times[0]:8.1f} ms  dense "
          f"{1e3 * times[1]:8.1f} ms  ratio {times[1] / times[0]:5.2f}")  # fmt: skip


def embed_row(n_mm: int, n_ml: int):
    sources, cell, _, _, _ = water_like(n_mm)
    charges = torch.tensor(np.random.default_rng(2).normal(size=(n_mm, 1)))
    charges -= charges.mean()
    probes = torch.rand(n_ml, 3, dtype=torch.float64) * cell[0, 0]
    calculator = PMECalculator(CoulombPotential(smearing=SMEARING), SPACING, NODES)
    search, (pairs, _, shifts) = _timed(
        lambda: probe_neighbors(probes, sources, cell, CUTOFF, return_shifts=True)
    )
    seconds, _ = _timed(
        lambda: field_at(calculator, charges, cell, sources, probes, pairs, shifts), 2
    )
    print(f"embed: {n_mm} MM charges, {n_ml} probes: pair search {search:.2f} s, "
          f"potential + field {seconds:.2f} s")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--mm", type=int, default=100000)
    parser.add_argument("--ml", type=int, default=1000)
    parser.add_argument("--dense", type=int, nargs="*", default=[])
    args = parser.parse_args()
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads; PME "
        f"σ {SMEARING}, cutoff {CUTOFF}, h {SPACING}, {NODES} nodes; residual 1e-6"
    )
    print(
        f"{'N':>7} {'step ms':>9} {'iter ms':>9} {'iters':>6} {'solve s':>8} "
        f"{'cold it':>8} {'warm it':>8}"
    )
    for size in args.sizes:
        qeq_rows(size, args.steps)
    for size in args.dense:
        dense_row(size)
    if args.mm > 0:
        embed_row(args.mm, args.ml)


if __name__ == "__main__":
    main()
