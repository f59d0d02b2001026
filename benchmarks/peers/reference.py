"""Converged reference forces, computed once per system with the repository's
torchpme and cached as ``.npz``.

Route: P3M with fixed tight parameters (:func:`reference_params`: order 5, a
fixed fine mesh resolution, real-space cutoff 10 Å, smearing 10/6.5 Å). The
parameters are intensive (mesh resolution, smearing, cutoff), so the error per
atom does not depend on N and one check at N = 512 covers every size: ``python reference.py --check`` compares the reference with an
independent route, a plain Ewald sum with explicit, much tighter parameters
(another cutoff and smearing, k-vectors far beyond convergence).

    python reference.py --sizes 512 4096 --systems rocksalt liquid [--check]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systems
from ours import make_step, neighbor_list, tensors, torch_setup

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")


# Cutoff 10 Å (capped below half the box), smearing 10/6.5 Å, order 5, and a
# fixed mesh of 128 points per 512-atom box length (128, 256, 512 points for
# N = 512, 4096, 32768), i.e. the same resolution at every size. The error
# estimate (estimate_error) is ~1e-5 (rock salt; it overestimates crystals) and
# ~1e-7 (liquid) of the RMS force; --check measures it at N = 512.
def reference_params(name, n, cell):
    mesh = round(128 * (n / 512) ** (1 / 3))
    return {
        "cutoff": 10.0,
        "smearing": 10.0 / 6.5,
        "interpolation_nodes": 5,
        "mesh_spacing": float(cell[0, 0]) / mesh,
        "fixed_mesh": [mesh, mesh, mesh],
    }


def _explicit(method, system, params, torch):
    import torchpme

    params = dict(params)
    cutoff = params.pop("cutoff")
    smearing = params.pop("smearing")
    positions, charges, cell = tensors(system, torch)
    indices, _, shifts = neighbor_list(torchpme, positions, cell, cutoff, torch)
    cls = {"p3m": torchpme.P3MCalculator, "ewald": torchpme.EwaldCalculator}[method]
    calculator = cls(torchpme.CoulombPotential(smearing=smearing), **params)
    step = make_step(calculator, positions, charges, cell, indices, shifts, torch)
    energy, forces = step()
    return energy, forces.numpy()


def _cutoff(system, wanted):
    return min(wanted, 0.5 * float(system["cell"][0, 0]) - 0.01)


def paths(name, n, cache=CACHE):
    base = os.path.join(cache, f"{name}_{n}")
    return base + "_system.npz", base + "_reference.npz"


def ensure(name, n, cache=CACHE, threads=2, log=print):
    """Create (if missing) the system and its reference; return their paths."""
    system_path, ref_path = paths(name, n, cache)
    if os.path.exists(system_path) and os.path.exists(ref_path):
        return system_path, ref_path
    os.makedirs(cache, exist_ok=True)
    torch = torch_setup(threads)
    t0 = time.perf_counter()
    positions, charges, cell = systems.make(name, n)
    system = {
        "name": name,
        "positions": positions,
        "charges": charges,
        "cell": cell,
        "n": n,
    }
    log(f"[reference] {name} N={n}: system built in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    params = reference_params(name, n, cell)
    params["cutoff"] = _cutoff(system, params["cutoff"])
    energy, forces = _explicit("p3m", system, params, torch)
    force_rms = float(np.sqrt(np.mean(np.sum(forces**2, axis=1))))
    log(
        f"[reference] {name} N={n}: P3M with fixed tight parameters in "
        f"{time.perf_counter() - t0:.1f} s, params {params}, RMS force {force_rms:.6g}"
    )
    np.savez(ref_path, forces=forces, energy=energy, params=json.dumps(params))
    systems.save_system(
        system_path, name, positions, charges, cell, force_rms=force_rms
    )
    return system_path, ref_path


def rel_rms_error(forces, reference):
    diff = np.asarray(forces) - np.asarray(reference)
    return float(
        np.sqrt(
            np.mean(np.sum(diff**2, axis=1)) / np.mean(np.sum(reference**2, axis=1))
        )
    )


def check(name, n, cache=CACHE, threads=2):
    """Independent route: plain Ewald with explicit tight parameters (cutoff just
    under half the box, smearing cutoff/7 so that erfc terms are ~1e-12, k-vectors
    up to 7.7/smearing so that exp(-k²σ²/2) ~ 1e-13) against the cached P3M
    reference; returns the relative RMS difference."""
    torch = torch_setup(threads)
    system_path, ref_path = ensure(name, n, cache, threads)
    system = systems.load_system(system_path)
    with np.load(ref_path) as data:
        reference = data["forces"]
        e_ref = float(data["energy"])
    import math

    cutoff = _cutoff(system, 11.0)
    smearing = cutoff / 7.0
    # the Ewald calculator keeps k-vectors up to about pi / lr_wavelength
    params = {
        "cutoff": cutoff,
        "smearing": smearing,
        "lr_wavelength": math.pi / (7.7 / smearing),
    }
    energy, forces = _explicit("ewald", system, params, torch)
    err = rel_rms_error(forces, reference)
    print(
        f"[check] {name} N={n}: Ewald {params} vs P3M reference: relative RMS force "
        f"difference {err:.3g}, energies {energy:.12g} vs {e_ref:.12g}"
    )
    return err


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--systems", nargs="+", default=["rocksalt"])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--cache", default=CACHE)
    args = parser.parse_args()
    for name in args.systems:
        for n in args.sizes:
            ensure(name, n, args.cache)
            if args.check:
                check(name, n, args.cache)


if __name__ == "__main__":
    main()
