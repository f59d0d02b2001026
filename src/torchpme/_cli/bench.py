"""``torchpme bench``: time Ewald, PME and P3M on rock-salt supercells of growing N.

Each method is tuned once per size for the requested accuracy (RMS force error
in eV/Å; the tuning is not timed), then the energy with forces (forward and backward pass, neighbour list
excluded) is timed as the median of ``--repeats`` runs after one warm-up. The
table goes to standard output; ``--plot FILE.png`` draws time against N on
log-log axes (needs matplotlib) and ``--json FILE`` keeps the numbers.
"""

import argparse
import json
import statistics
import time
from typing import List

from .._core.validation import message
from .options import check_accuracy, check_writable, common_options, dtype_device
from .options import show_progress as _show_progress

__all__ = ["run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchpme bench",
        description="Time Ewald, PME and P3M (energy + forces) against the number "
        "of atoms on rock-salt supercells, and plot the scaling.",
    )
    parser.add_argument(
        "--sizes",
        default="1,2,3,4",
        help="supercell repeats per axis, comma separated; n repeats give 8n³ "
        "atoms (default 1,2,3,4: 8 to 512 atoms)",
    )
    parser.add_argument(
        "--methods", default="ewald,pme,p3m", help="default ewald,pme,p3m"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per point (default 3)"
    )
    parser.add_argument(
        "--plot",
        default=None,
        help="write a scaling plot (PNG) of time against N (needs matplotlib)",
    )
    parser.add_argument("--json", default=None, help="write the timings as JSON")
    common_options(parser)
    return parser


def _positive_ints(text: str, argument: str) -> List[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise ValueError(
            message(argument, "positive integers separated by commas", f"'{text}'")
        )
    return values


def _time(function, repeats: int) -> float:
    function()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _energy_and_forces(calculator, charges, cell, positions, indices, shifts, device):
    """One timed step: distances, the energy and its backward pass, on a
    neighbour list held as a :class:`~torchpme.neighbors.PairList` (as in MD)."""
    import torch

    from ..neighbors import PairList, pair_distances

    pairs = PairList(indices, shifts)

    def step():
        moving = positions.detach().requires_grad_(True)
        distances = pair_distances(moving, cell, pairs)
        calculator.energy(charges, cell, moving, pairs, distances).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def run(argv: List[str]) -> int:
    """Run the benchmark; returns the exit status."""
    args = _parser().parse_args(argv)
    import torch

    from ..neighbors import compute_neighbors
    from . import engine
    from .progress import progress
    from .structures import rocksalt

    repeats_per_axis = _positive_ints(args.sizes, "--sizes")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        if method not in engine.METHODS[1:]:
            raise ValueError(
                message("--methods", f"names from {engine.METHODS[1:]}", f"'{method}'")
            )
    if args.repeats <= 0:
        raise ValueError(message("--repeats", "a positive integer", f"{args.repeats}"))
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ValueError(message("--plot", "a .png file name", f"'{args.plot}'"))
    for path, argument in ((args.plot, "--plot"), (args.json, "--json")):
        if path is not None:
            check_writable(path, argument)
    if args.plot is not None:
        _pyplot()  # before the benchmark, not after it
    check_accuracy(args.accuracy)
    if args.cutoff is not None:
        check_accuracy(args.cutoff, "--cutoff")
    dtype, device = dtype_device(args)
    prefactor = engine.unit_prefactor("eV_A")
    periodic = [True, True, True]
    jobs = [(r, m) for r in repeats_per_axis for m in methods]
    rows = []
    for repeat, method in progress(
        jobs, len(jobs), "bench", enabled=_show_progress(args)
    ):
        atoms = rocksalt(repeat=repeat, displacement=0.05, seed=repeat)
        positions = torch.tensor(atoms.positions, dtype=dtype, device=device)
        cell = torch.tensor(atoms.cell[:], dtype=dtype, device=device)
        charges = torch.tensor(
            atoms.get_initial_charges(), dtype=dtype, device=device
        ).reshape(-1, 1)
        parameters = engine.choose_parameters(
            method,
            charges,
            cell,
            positions,
            periodic,
            args.accuracy / prefactor,  # eV/Å -> the tuners' e²/Å²
            args.cutoff,
        )
        calculator = engine.build_calculator(parameters, prefactor, dtype, device)
        indices, _, shifts = compute_neighbors(
            positions, cell, parameters.cutoff, periodic, return_shifts=True
        )

        step = _energy_and_forces(
            calculator, charges, cell, positions, indices, shifts, device
        )
        seconds = _time(step, args.repeats)
        rows.append(
            {
                "method": method,
                "n_atoms": len(atoms),
                "seconds": seconds,
                "parameters": parameters.as_dict(),
            }
        )
    print(f"{'method':<8}{'atoms':>8}{'time (ms)':>12}  parameters")
    for row in rows:
        described = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row["parameters"].items()
            if k != "method"
        )
        print(
            f"{row['method']:<8}{row['n_atoms']:>8}{1e3 * row['seconds']:>12.3f}"
            f"  {described}"
        )
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    if args.plot is not None:
        _plot(rows, methods, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _pyplot():
    """matplotlib's pyplot (Agg), or an ``ImportError`` naming ``--plot``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            message("--plot", "matplotlib installed (pip install matplotlib)", "none")
        ) from None
    return plt


def _plot(rows, methods: List[str], path: str) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 4))
    for method in methods:
        points = [(r["n_atoms"], r["seconds"]) for r in rows if r["method"] == method]
        axes.plot(*zip(*points), marker="o", label=method)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("number of atoms N")
    axes.set_ylabel("energy + forces time (s)")
    axes.set_title("torchpme scaling")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
