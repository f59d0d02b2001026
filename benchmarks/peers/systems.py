"""Benchmark systems shared by every peer script (NumPy only, no torch).

Units: positions and cell in Å, charges in e, Coulomb with prefactor 1, so
energies are in e²/Å and forces in e²/Å².

Every peer reads a system from an ``.npz`` written by :func:`save_system` with the
keys ``positions (N, 3)``, ``charges (N,)``, ``cell (3, 3)`` (rows are lattice
vectors, cubic here), ``name`` and, once the driver has computed the reference,
``force_rms`` (RMS of the reference forces, used to turn the relative target
accuracy into an absolute one).
"""

import numpy as np

LATTICE = 5.64  # Å, NaCl conventional cell
DENSITY = 0.1  # atoms / Å³ for the random ionic liquid
MIN_DISTANCE = 1.5  # Å, smallest pair distance in the random ionic liquid
SYSTEMS = ("rocksalt", "liquid")


def rocksalt(n_atoms: int, seed: int = 0, rattle: float = 0.1):
    """NaCl supercell of ``m³`` conventional cells (``N = 8 m³``), each ion moved by
    a vector drawn uniformly in a cube of half-width ``rattle / √3`` per axis, so that
    no displacement exceeds ``rattle`` Å."""
    m = round((n_atoms / 8) ** (1 / 3))
    if 8 * m**3 != n_atoms:
        raise ValueError(f"rock salt needs N = 8 m^3 atoms, got {n_atoms}")
    # the 8 sites of the conventional cell, in units of the lattice constant
    basis = (
        np.array(
            [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
        )
        * 0.5
    )
    # Na on sites with an even sum of half-indices, Cl on the others
    signs = np.where(np.rint(2 * basis.sum(axis=1)) % 2 == 0, 1.0, -1.0)
    cells = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(
        -1, 3
    )
    positions = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 3) * LATTICE
    charges = np.tile(signs, len(cells))
    rng = np.random.default_rng(seed)
    half = rattle / np.sqrt(3.0)
    positions = positions + rng.uniform(-half, half, size=positions.shape)
    cell = np.eye(3) * LATTICE * m
    return positions % (LATTICE * m), charges, cell


def liquid(
    n_atoms: int, seed: int = 0, density: float = DENSITY, dmin: float = MIN_DISTANCE
):
    """Random ionic liquid: ``N`` (even) point charges ±1 (half each, neutral) at
    ``density`` atoms/Å³ in a cubic cell, placed by random sequential insertion
    with no pair closer than ``dmin`` Å (minimum image)."""
    if n_atoms % 2:
        raise ValueError(f"the ionic liquid needs an even N, got {n_atoms}")
    length = (n_atoms / density) ** (1 / 3)
    rng = np.random.default_rng(seed)
    n_bins = max(1, int(length // dmin))
    width = length / n_bins
    bins = {}
    positions = np.empty((n_atoms, 3))
    placed = 0
    tries = 0
    while placed < n_atoms:
        tries += 1
        if tries > 200 * n_atoms:
            raise RuntimeError("random insertion did not converge")
        trial = rng.uniform(0.0, length, size=3)
        key = tuple((trial // width).astype(int) % n_bins)
        ok = True
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    near = bins.get(
                        (
                            (key[0] + dx) % n_bins,
                            (key[1] + dy) % n_bins,
                            (key[2] + dz) % n_bins,
                        )
                    )
                    if not near:
                        continue
                    d = positions[near] - trial
                    d -= length * np.rint(d / length)
                    if np.min(np.einsum("ij,ij->i", d, d)) < dmin * dmin:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        if ok:
            positions[placed] = trial
            bins.setdefault(key, []).append(placed)
            placed += 1
    charges = np.ones(n_atoms)
    charges[: n_atoms // 2] = -1.0
    rng.shuffle(charges)
    return positions, charges, np.eye(3) * length


def make(name: str, n_atoms: int, seed: int = 0):
    """``(positions, charges, cell)`` of system ``name`` (``rocksalt`` or ``liquid``)."""
    if name == "rocksalt":
        return rocksalt(n_atoms, seed)
    if name == "liquid":
        return liquid(n_atoms, seed)
    raise ValueError(f"unknown system {name!r}; known: {SYSTEMS}")


def save_system(path, name, positions, charges, cell, **extra):
    np.savez(path, name=name, positions=positions, charges=charges, cell=cell, **extra)


def load_system(path):
    """``dict`` with ``positions``, ``charges``, ``cell`` (float64 arrays), ``name``,
    ``n`` and ``force_rms`` (``nan`` if absent)."""
    with np.load(path) as data:
        out = {
            "name": str(data["name"]),
            "positions": np.asarray(data["positions"], dtype=np.float64),
            "charges": np.asarray(data["charges"], dtype=np.float64),
            "cell": np.asarray(data["cell"], dtype=np.float64),
            "force_rms": float(data["force_rms"])
            if "force_rms" in data
            else float("nan"),
        }
    out["n"] = len(out["charges"])
    return out


def mesh_hi_for(cell, spacing: float = 0.36) -> int:
    """Mesh exponent bound for the torchpme tuners (``mesh_hi``): one power of two
    above the mesh that a spacing of ``spacing`` Å needs (their meshes are the
    smallest power of two ≥ 2L/h + 1), and at least the default 7. Enough for
    1e-4 relative on rock salt at every size here; an unbounded 9 made torch-pme
    0.5's tuner (which times every candidate mesh) run out of 24 GiB at N = 512."""
    length = float(np.max(np.linalg.norm(np.asarray(cell), axis=1)))
    return max(7, int(np.ceil(np.log2(length / spacing))) + 1)


def peak_rss_mb() -> float:
    """VmHWM (peak resident memory) of this process in MB, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


_SETUP_PEAK = [float("nan")]


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs), so
    that the peak measured afterwards covers only the timed steps (and whatever
    stays resident: interpreter, libraries, data). The peak before the reset (setup
    and tuning included) is kept and reported as ``setup_peak_mb``."""
    _SETUP_PEAK[0] = peak_rss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def time_steps(step, warmup: int = 2, repeats: int = 5, min_repeats_time: float = 0.0):
    """Run ``step()`` ``warmup`` times, then ``repeats`` times; return
    ``(median seconds, all timings, last result)``."""
    import time

    result = None
    for _ in range(warmup):
        result = step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times, result


def parse_peer_args(argv=None):
    """Common command line of the peer scripts:
    ``SYSTEM.npz OUT.npz [--accuracy 1e-4] [--repeats 5] [--warmup 2] [--threads 2]``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("system")
    parser.add_argument("out", help="where to save the forces (npz, key 'forces')")
    parser.add_argument(
        "--accuracy", type=float, default=1e-4, help="relative RMS force error"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cutoff", type=float, default=None, help="real-space cutoff, Å"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="peer-specific accuracy knob (e.g. OpenMM's ewaldErrorTolerance)",
    )
    return parser.parse_args(argv)


def measure(peer, version, system, step, args, scales=(1.0, 1.0), **extra):
    """Time ``step`` (returning energy and forces) as every peer does, then
    :func:`report`; ``scales`` convert the energy and the forces to e²/Å and
    e²/Å² (for peers in other units)."""
    reset_peak_rss()
    median, times, (energy, forces) = time_steps(step, args.warmup, args.repeats)
    forces = np.asarray(forces, dtype=np.float64) * scales[1]
    report(peer, version, system, median, times, forces, energy * scales[0],
           args.out, **extra)  # fmt: skip


def report(peer, version, system, time_s, times, forces, energy, out, **extra):
    """Save the forces and print the one JSON line the driver reads."""
    import json

    np.savez(out, forces=np.asarray(forces, dtype=np.float64), energy=float(energy))
    line = {
        "peer": peer,
        "version": version,
        "n": int(system["n"]),
        "system": system["name"],
        "time_s": time_s,
        "times": [float(t) for t in times],
        "peak_mb": peak_rss_mb(),
        "setup_peak_mb": _SETUP_PEAK[0],
        "forces": str(out),
        "energy": float(energy),
    }
    line.update(extra)
    print("PEER_RESULT " + json.dumps(line), flush=True)
