"""Benchmark of point dipoles: P3M (torchpme.multipoles) against our dipolar Ewald
(CalculatorDipole) and against the charge-only P3M step on the same mesh.

A dipolar fluid: ``N = m³`` atoms at 0.1 atoms/Å³ on a simple cubic lattice,
each displaced at random by up to 0.4 Å along each axis (no two closer than
about 1.3 Å), dipoles of random direction and length 0.5 e·Å. For each method it reports the
time of energy + forces (forward and backward to the positions, pairs given, the
neighbour search not timed) and the RMS force error relative to the RMS force,
against a converged reference (a fine P3M; checked against a tight Ewald at
small N). P3M's parameters come from ``tune_multipoles`` (absolute accuracy
``--accuracy`` times the RMS force) at each of ``--cutoffs``, the fastest kept;
it reports the tuning time and the estimated and measured errors. Ewald's are the
cheapest of a few candidates that reach ``--accuracy``; ``--sizes`` beyond
``--ewald-max`` time the mesh methods only.

``--polarise``: induced dipoles (polarisabilities 1.0 Å³, Thole 0.39) in the
field of the permanent dipoles, with the P3M parameters found: conjugate-gradient
iterations to a 1e-8 relative residual and the time of the solve.

    python benchmarks/multipoles.py --sizes 4096 --accuracy 1e-5 --polarise
    python benchmarks/multipoles.py --sizes 262144 --ewald-max 0
"""

import argparse
import math
import time

import numpy as np
import torch

from torchpme import (
    CalculatorDipole,
    CoulombPotential,
    P3MCalculator,
    PotentialDipole,
)
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors
from torchpme.polarisation import induce
from torchpme.tuning.multipoles import tune_multipoles

DENSITY = 0.1
DTYPE = torch.float64
# candidates (smearing, cutoff, wavelength) of Ewald, around a cutoff of 6σ
# (erfc at about 4.3) and the shorter wavelengths dipoles need (their forces
# grow as k³)
SMEARINGS = [0.8, 1.0, 1.3, 1.6, 2.0]
EWALD_CANDIDATES = [(s, 6.0 * s, f * s) for s in SMEARINGS for f in (0.8, 0.6)]


def fluid(n_atoms: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = round(n_atoms ** (1.0 / 3.0))
    if side**3 != n_atoms:
        raise SystemExit(f"--sizes must be cubes (m³), got {n_atoms}")
    spacing = DENSITY ** (-1.0 / 3.0)
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1)
    jitter = rng.uniform(-0.4, 0.4, size=(n_atoms, 3))
    positions = torch.tensor(grid.reshape(-1, 3) * spacing + jitter)
    edge = side * spacing
    directions = rng.normal(size=(n_atoms, 3))
    dipoles = 0.5 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return positions, torch.eye(3, dtype=DTYPE) * edge, torch.tensor(dipoles)


def _best(step, repeat=3):
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - start)
    return best, result


def p3m_step(positions, cell, dipoles, params, charges_only=False):
    smearing, cutoff, spacing, nodes = params
    calculator = P3MCalculator(CoulombPotential(smearing=smearing), spacing, nodes)
    calculator.to(DTYPE)
    indices, _, shifts = compute_neighbors(positions, cell, cutoff, return_shifts=True)
    zeros = torch.zeros(len(positions), dtype=DTYPE)
    if charges_only:
        charges = dipoles[:, :1].clone()

        def step():
            p = positions.clone().requires_grad_(True)
            d = torch.linalg.norm(
                p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ cell, dim=1
            )
            energy = calculator.energy(charges, cell, p, indices, d)
            return -torch.autograd.grad(energy, p)[0]

        return step
    module = MultipoleCalculator(calculator)

    def step():
        p = positions.clone().requires_grad_(True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ cell
        energy = module.energy(zeros, dipoles, cell, p, indices, vectors)
        return -torch.autograd.grad(energy, p)[0]

    return step


def ewald_step(positions, cell, dipoles, params):
    smearing, cutoff, wavelength = params
    potential = PotentialDipole(smearing=smearing)
    calculator = CalculatorDipole(potential, lr_wavelength=wavelength).to(DTYPE)
    indices, _, shifts = compute_neighbors(positions, cell, cutoff, return_shifts=True)

    def step():
        p = positions.clone().requires_grad_(True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ cell
        energy = (dipoles * calculator(dipoles, cell, p, indices, vectors)).sum()
        return -torch.autograd.grad(energy, p)[0]

    return step


def polarise(positions, cell, dipoles, params):
    """``(seconds, iterations)`` of the induced dipoles in the permanent field."""
    smearing, cutoff, spacing, nodes = params
    calculator = P3MCalculator(CoulombPotential(smearing=smearing), spacing, nodes)
    module = MultipoleCalculator(calculator.to(DTYPE))
    indices, _, shifts = compute_neighbors(positions, cell, cutoff, return_shifts=True)
    vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
    vectors = vectors + shifts.to(DTYPE) @ cell
    zeros = torch.zeros(len(positions), dtype=DTYPE)
    _, field, _ = module(zeros, dipoles, cell, positions, indices, vectors)
    alpha = torch.ones(len(positions), dtype=DTYPE)

    def solve():
        return induce(module, alpha, field, cell, positions, indices, vectors,
                      thole=0.39, tolerance=1e-8)  # fmt: skip

    seconds, result = _best(solve, 1)
    return seconds, result.iterations


def _error(forces, reference):
    return float(torch.sqrt(((forces - reference) ** 2).mean() / (reference**2).mean()))


def cheapest(make, candidates, reference, accuracy):
    """``(seconds, error, params)`` of the fastest candidate within ``accuracy``."""
    best = None
    for params in candidates:
        step = make(params)
        seconds, forces = _best(step, 2)
        error = _error(forces, reference)
        if error <= accuracy and (best is None or seconds < best[0]):
            best = (seconds, error, params)
    return best


def force_scale():
    """The RMS force of the fluid (intensive: from 512 atoms, a fine P3M)."""
    positions, cell, dipoles = fluid(512)
    forces = p3m_step(positions, cell, dipoles, (1.6, 10.0, 0.25, 5))()
    return float((forces**2).sum(dim=1).mean().sqrt())


def tuned_p3m(positions, cell, dipoles, cutoffs, reference, accuracy, scale):
    """``(seconds, error, params)`` of the fastest tuned P3M over ``cutoffs``,
    printing each tuning; without a reference the error is the estimate."""
    zeros = torch.zeros(len(positions), dtype=DTYPE)
    best = None
    for cutoff in cutoffs:
        start = time.perf_counter()
        tuned = tune_multipoles(
            zeros, dipoles, cell, positions, cutoff, accuracy * scale
        )
        tuning = time.perf_counter() - start
        params = (tuned.smearing, cutoff, tuned.params["mesh_spacing"],
                  tuned.params["interpolation_nodes"])  # fmt: skip
        repeat = 2 if reference is not None else 1
        seconds, forces = _best(p3m_step(positions, cell, dipoles, params), repeat)
        estimate = tuned.force_error / scale
        error = estimate if reference is None else _error(forces, reference)
        print(f"#   cutoff {cutoff:5.1f}: tuned in {tuning:5.1f} s, σ {params[0]:.3f}, "
              f"spacing {params[2]:.3f}, nodes {params[3]}, error estimated "
              f"{estimate:.1e} measured {error:.1e}, step "
              f"{1e3 * seconds:.1f} ms")  # fmt: skip
        if best is None or seconds < best[0]:
            best = (seconds, error, params)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096])
    parser.add_argument("--accuracy", type=float, default=1e-5)
    parser.add_argument("--ewald-max", type=int, default=8192)
    parser.add_argument("--polarise", action="store_true")
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[8.0, 10.0, 12.0])
    parser.add_argument(
        "--reference-max", type=int, default=8192,
        help="larger sizes report the estimated error (no reference)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, float64")
    scale = force_scale()
    for n in args.sizes:
        positions, cell, dipoles = fluid(n)
        reference = None
        if n <= args.reference_max:
            reference = p3m_step(positions, cell, dipoles, (1.6, 10.0, 0.25, 5))()
        p3m = tuned_p3m(
            positions, cell, dipoles, args.cutoffs, reference, args.accuracy, scale
        )
        charge_seconds, _ = _best(p3m_step(positions, cell, dipoles, p3m[2], True))
        line = (
            f"N {n:7d}  P3M dipoles {1e3 * p3m[0]:9.1f} ms (error {p3m[1]:.1e}, "
            f"{p3m[2]})  charges-only step {1e3 * charge_seconds:9.1f} ms  "
            f"ratio {p3m[0] / charge_seconds:.2f}"
        )
        if n <= args.ewald_max and reference is not None:
            ewald = cheapest(
                lambda params: ewald_step(positions, cell, dipoles, params),
                EWALD_CANDIDATES, reference, args.accuracy,
            )  # fmt: skip
            if ewald is None:
                line += "  Ewald: no candidate reached the accuracy"
            else:
                line += (
                    f"  Ewald {1e3 * ewald[0]:9.1f} ms (error {ewald[1]:.1e}, "
                    f"{ewald[2]})  Ewald/P3M {ewald[0] / p3m[0]:.1f}"
                )
        print(line)
        if args.polarise:
            seconds, iterations = polarise(positions, cell, dipoles, p3m[2])
            print(f"N {n:7d}  induced dipoles: {iterations} iterations to 1e-8, "
                  f"{seconds:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
