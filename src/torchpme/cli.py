"""The ``torchpme`` console command: electrostatics of a structure file.

::

    torchpme                               # embedded rock salt + Madelung check
    torchpme structure.cif --charges Na=1,Cl=-1 --method pme --accuracy 1e-5
    torchpme frame.extxyz --output result.extxyz
    torchpme water.xyz --qeq O=2.5:12:0.7,H=-1.2:9:0.5  # charge equilibration
    torchpme bench --sizes 64,216,512 --plot scaling.png

A structure is read with ASE (any format it reads: extxyz, CIF, POSCAR, ...).
Charges come from ``--charges`` (``Na=1,Cl=-1``) or from the file (a ``charges``
array or ``initial_charges``), or from charge equilibration with ``--qeq``
(per-element ``χ:J:σ``, :mod:`torchpme._cli.qeq`; the report gives the charges).
The energy is ``E = Σ_i q_i V_i`` with Coulomb
potentials ``V_i`` in the chosen ``--units`` (``eV_A``: eV and Å; ``gaussian``:
e²/Å; ``kcalmol_A``; ``kJmol``). Forces are ``−∂E/∂r``; the stress is
``(1/V) ∂E/∂ε`` (ASE's sign convention). ``--accuracy`` is the target RMS force
error in the units of the output forces (eV/Å with the default ``eV_A``); the
accuracy printed is the error estimate of the parameters that ran, next to that
target, with a one-line warning when the estimate misses it. Errors are one line
on standard error and a non-zero exit status; ``--traceback`` shows the full
Python traceback.
"""

import argparse
import json
import math
import sys
import time
import warnings
from typing import List, Optional

from ._cli.frontdoor import (
    Result,
    check_fixed,
    compute,
    madelung_check,
    translate_advice,
)
from ._cli.options import (
    CLIError,
    check_accuracy,
    check_writable,
    common_options,
    dtype_device,
    one_line,
    show_progress,
)
from ._cli.report import report, summary, write_output

__all__ = ["console", "main"]

EXIT_ERROR = 1


def _version() -> str:
    try:
        from ._version import __version__
    except ImportError:  # pragma: no cover - generated at install time
        return "unknown"
    return __version__


def _parser() -> argparse.ArgumentParser:
    from ._cli.engine import METHODS, UNITS

    parser = argparse.ArgumentParser(
        prog="torchpme",
        description="Electrostatic energy, forces and stress of a structure "
        "(Ewald, PME or P3M). Without a file: a displaced rock-salt supercell "
        "and a check of the rock-salt Madelung constant. "
        "`torchpme bench --help` times the methods.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        help="structure file in any format ASE reads (extxyz, CIF, POSCAR, ...); "
        "the last frame of a trajectory",
    )
    parser.add_argument(
        "--format", default=None, help="file format for ASE (default: guessed)"
    )
    parser.add_argument(
        "--charges",
        default=None,
        help="charges per element, e.g. Na=1,Cl=-1 (default: from the file)",
    )
    parser.add_argument(
        "--qeq",
        default=None,
        help="equilibrate the charges instead: chi:J:sigma per element, e.g. "
        "Na=-1.5:9:0.6,Cl=1.8:7:0.75 (chi in the energy unit of --units per e, "
        'J per e², sigma in Å), or a JSON file {"Na": [chi, J, sigma]}',
    )
    parser.add_argument(
        "--total-charge",
        type=float,
        default=0.0,
        help="total charge of the equilibrated charges (with --qeq; default 0)",
    )
    parser.add_argument(
        "--allow-charged",
        action="store_true",
        help="accept a non-neutral system (a uniform background neutralises it)",
    )
    parser.add_argument(
        "--method", default="auto", choices=METHODS, help="default auto"
    )
    parser.add_argument(
        "--units", default="eV_A", choices=list(UNITS), help="default eV_A"
    )
    parser.add_argument(
        "--smearing",
        type=float,
        default=None,
        help="Gaussian smearing in Å (skips its tuning)",
    )
    parser.add_argument(
        "--lr-wavelength", type=float, default=None, help="Ewald wavelength in Å"
    )
    parser.add_argument(
        "--mesh-spacing", type=float, default=None, help="PME/P3M mesh spacing in Å"
    )
    parser.add_argument(
        "--interpolation-nodes", type=int, default=None, help="PME/P3M nodes"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="write per-atom potentials and forces (.xyz/.extxyz or .json)",
    )
    parser.add_argument(
        "--top", type=int, default=5, help="how many of the largest forces to print"
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON summary instead of text"
    )
    common_options(parser)
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _fixed_params(args) -> dict:
    params = {}
    if args.lr_wavelength is not None:
        params["lr_wavelength"] = args.lr_wavelength
    if args.mesh_spacing is not None:
        params["mesh_spacing"] = args.mesh_spacing
    if args.interpolation_nodes is not None:
        params["interpolation_nodes"] = args.interpolation_nodes
    return params


def _read_structure(path: str, fmt: Optional[str]):
    import os

    import ase.io

    from ._core.validation import message

    if not os.path.isfile(path):
        raise CLIError(message("file", "an existing structure file", f"'{path}'"))
    try:
        atoms = ase.io.read(path, format=fmt)
    except Exception as error:
        reader = f"the {fmt} reader" if fmt else "ASE's reader for its extension"
        text = str(error).strip()
        why = f"{type(error).__name__}: {one_line(error)}" if text else "no details"
        raise CLIError(
            message(
                "file",
                "a structure file ASE can read (--format names the format)",
                f"'{path}', which {reader} could not read ({why})",
            )
        ) from None
    if isinstance(atoms, list):  # pragma: no cover - index=-1 returns one frame
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise CLIError(message("file", "a structure with atoms", f"'{path}' (empty)"))
    return atoms


def _charges(atoms, option: Optional[str]):
    from ._cli.structures import charges_for, charges_from_atoms, parse_charges
    from ._core.validation import message

    symbols = atoms.get_chemical_symbols()
    if option is not None:
        return charges_for(symbols, parse_charges(option), strict=True)
    charges = charges_from_atoms(atoms)
    if charges is None:
        elements = ", ".join(sorted(set(symbols)))
        raise CLIError(
            message(
                "--charges",
                f"given (e.g. --charges {symbols[0]}=1,...) when the file has no "
                f"charges; elements: {elements}",
                "no charges",
            )
        )
    if charges.shape[0] != len(atoms):
        raise CLIError(
            message("charges", f"one per atom ({len(atoms)})", f"{charges.shape[0]}")
        )
    return charges


def _check_output(path: str) -> None:
    from ._core.validation import message

    if not path.lower().endswith((".xyz", ".extxyz", ".json")):
        raise CLIError(
            message("--output", "a .xyz, .extxyz or .json file name", f"'{path}'")
        )
    check_writable(path, "--output")


LABELS = {
    "method": "--method",
    "smearing": "--smearing",
    "cutoff": "--cutoff",
    "accuracy": "--accuracy",
    "params": "the k-space options",
    "lr_wavelength": "--lr-wavelength",
    "mesh_spacing": "--mesh-spacing",
    "interpolation_nodes": "--interpolation-nodes",
}


def _check_options(args) -> None:
    """Option values that need no structure, checked before any work."""
    from ._core.validation import message

    check_accuracy(args.accuracy)
    if args.qeq is not None and args.charges is not None:
        raise CLIError(
            message("--charges", "left out with --qeq (it solves for them)",
                    f"--charges {args.charges}")
        )  # fmt: skip
    if not math.isfinite(args.total_charge):
        raise CLIError(message("--total-charge", "finite", f"{args.total_charge}"))
    if args.cutoff is not None:
        check_accuracy(args.cutoff, "--cutoff")
    if args.top < 0:
        raise CLIError(message("--top", "an integer >= 0", f"{args.top}"))
    if args.output is not None:
        _check_output(args.output)


def _warn_after(caught, result: Optional[Result], unit: str) -> None:
    """Warnings of the run, printed once each after the progress bar is gone; the
    engine's accuracy advice gets the option names and the numbers in ``unit``."""
    seen = set()
    for record in caught:
        text = one_line(record.message)
        if text.startswith("the estimated error") and result is not None:
            text = translate_advice(text, LABELS)
            if result.error is not None:
                text += f" (estimate {result.error:.3g} {unit}/Å)"
        if text not in seen:
            seen.add(text)
            warnings.warn_explicit(text, record.category, record.filename, 0)


def run(argv: List[str]) -> int:
    """The main command (see the module docstring)."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    from ._cli.engine import UNITS, unit_prefactor
    from ._cli.progress import Steps
    from ._cli.structures import check_neutral, rocksalt

    _check_options(args)
    dtype, device = dtype_device(args)
    if args.file is None:
        atoms = rocksalt(repeat=2, displacement=0.1, seed=7)
        name = "embedded rock salt (2x2x2 NaCl, displaced ions)"
    else:
        atoms = _read_structure(args.file, args.format)
        name = args.file
    qeq = None
    if args.qeq is None:
        charges = _charges(atoms, args.charges)
        check_neutral(charges, args.allow_charged, "use --allow-charged")
    else:
        from ._cli.qeq import parse_qeq, qeq_arrays

        qeq = parse_qeq(args.qeq)
        qeq_arrays(atoms.get_chemical_symbols(), qeq)  # every element, before work
        charges = None
    params = _fixed_params(args)
    periodic = [bool(p) for p in atoms.pbc]
    check_fixed(args.method, periodic, params, args.smearing, LABELS)
    names = ["tuning", "energy, forces, stress"]
    if args.file is None:
        names.append("Madelung check")
    steps = Steps(names, enabled=show_progress(args))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compute(
                atoms,
                charges,
                method=args.method,
                accuracy=args.accuracy,
                cutoff=args.cutoff,
                units=args.units,
                dtype=dtype,
                device=device,
                smearing=args.smearing,
                params=params,
                steps=steps,
                qeq=qeq,
                total_charge=args.total_charge,
            )
            madelung = None
            if args.file is None:
                steps.start("Madelung check")
                gaussian = args.accuracy / unit_prefactor(args.units)
                madelung = madelung_check(args.method, gaussian, dtype, device)
                steps.finish()
    finally:
        steps.close()
    _warn_after(caught, result, UNITS[args.units][1])
    result.timings["total"] = time.perf_counter() - start
    charges = result.charges
    if args.output is not None:
        write_output(args.output, atoms, charges, result, args.units)
    if args.json:
        print(json.dumps(summary(atoms, charges, result, args, madelung)))
    else:
        print(report(atoms, charges, result, args, name, madelung, _version()))
        if args.output is not None:
            print(f"wrote      {args.output}")
    if madelung is not None and not madelung["passed"]:
        return EXIT_ERROR
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (e.g. an accuracy the tuner could not reach) as one line."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
        return
    print(f"torchpme: warning: {one_line(message)}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``torchpme`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in argv
    try:
        with warnings.catch_warnings():
            if not show_traceback:
                warnings.showwarning = _one_line_warning
            if argv and argv[0] == "bench":
                from ._cli.bench import run as bench

                return bench(argv[1:])
            return run(argv)
    except KeyboardInterrupt:
        print("torchpme: interrupted", file=sys.stderr)
        return 130
    except ImportError as error:
        if show_traceback:
            raise
        missing = getattr(error, "name", None) or ""
        hint = {
            "ase": "the torchpme command reads structures with ASE: pip install ase "
            '(or pip install "torchpme[cli]")',
            "matplotlib": "plots need matplotlib: pip install matplotlib",
        }.get(missing.split(".")[0])
        text = hint if hint else one_line(error)
        print(f"torchpme: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        if show_traceback:
            raise
        print(f"torchpme: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def console() -> int:
    """The console script: :func:`main` in a process of its own, whose allocator
    keeps freed memory for the repeated steps (:func:`torchpme.keep_freed_memory`;
    ``main`` itself leaves the allocator of a calling program alone)."""
    from ._core.allocator import keep_freed_memory

    keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(console())
