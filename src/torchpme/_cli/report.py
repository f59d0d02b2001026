"""What ``torchpme`` prints and writes: the text report, the JSON summary and the
per-atom output file (extxyz or JSON), all in the units of ``--units``."""

import json

from .frontdoor import Result

__all__ = ["report", "summary", "write_output"]


def write_output(path: str, atoms, charges, result: Result, units: str) -> None:
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    from .engine import UNITS

    lower = path.lower()
    evaluation = result.evaluation
    energy_unit = UNITS[units][1]
    if lower.endswith(".json"):
        data = {
            "units": {
                "energy": energy_unit,
                "length": "Å",
                "forces": f"{energy_unit}/Å",
                "stress": f"{energy_unit}/Å³",
                "potentials": f"{energy_unit}/e",
            },
            "parameters": result.parameters.as_dict(),
            "error_estimate": result.error,
            "energy": float(evaluation.energy),
            "symbols": atoms.get_chemical_symbols(),
            "positions": np.asarray(atoms.positions).tolist(),
            "cell": np.asarray(atoms.cell[:]).tolist(),
            "pbc": [bool(p) for p in atoms.pbc],
            "charges": np.asarray(charges, dtype=float).tolist(),
            "potentials": evaluation.potentials.tolist(),
            "energies": evaluation.energies.tolist(),
            "forces": evaluation.forces.tolist(),
            "stress": None if evaluation.stress is None else evaluation.stress.tolist(),
        }
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        return
    out = atoms.copy()
    out.set_initial_charges(np.asarray(charges, dtype=float))
    out.arrays["potentials"] = evaluation.potentials.numpy().copy()
    results = {
        "energy": float(evaluation.energy),
        "free_energy": float(evaluation.energy),
        "forces": evaluation.forces.numpy(),
        "energies": evaluation.energies.numpy(),
    }
    if evaluation.stress is not None:
        s = evaluation.stress.numpy()
        results["stress"] = np.array(
            [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
        )
    out.calc = SinglePointCalculator(out, **results)
    out.info["torchpme_units"] = energy_unit
    out.info.update(
        {f"torchpme_{k}": v for k, v in result.parameters.as_dict().items()}
    )
    if result.error is not None:
        out.info["torchpme_error_estimate"] = result.error
    ase.io.write(path, out, format="extxyz")


def report(
    atoms, charges, result: Result, args, name: str, madelung, version: str
) -> str:
    import numpy as np

    from .engine import UNITS

    evaluation = result.evaluation
    unit = UNITS[args.units][1]
    periodic = "".join("T" if p else "F" for p in atoms.pbc)
    lines = [
        f"torchpme {version}: {name}, {len(atoms)} atoms "
        f"({atoms.get_chemical_formula()}), pbc {periodic}, "
        f"total charge {float(np.sum(charges)):.6g} e",
        f"method     {result.parameters.method}"
        + (" (auto)" if result.method_requested == "auto" else ""),
        f"parameters {result.parameters.describe() or '(none: direct sum)'}",
        f"accuracy   {_accuracy_text(result, args.accuracy, unit)}",
        f"energy     {float(evaluation.energy):.10g} {unit}",
    ]
    if result.qeq_iterations is not None:
        lines.insert(
            -1,
            f"charges    equilibrated (qeq, {result.qeq_iterations} CG iterations): "
            f"{float(np.min(charges)):.6f} to {float(np.max(charges)):.6f} e",
        )
    forces = evaluation.forces.numpy()
    norms = np.linalg.norm(forces, axis=1)
    order = np.argsort(-norms, kind="stable")[: max(args.top, 0)]
    lines.append(f"largest forces ({unit}/Å):")
    lines.append("    atom  element        |F|           Fx           Fy           Fz")
    symbols = atoms.get_chemical_symbols()
    for index in order:
        fx, fy, fz = forces[index]
        lines.append(
            f"  {index:6d}  {symbols[index]:<7s}{norms[index]:11.6f}  "
            f"{fx:11.6f}  {fy:11.6f}  {fz:11.6f}"
        )
    if evaluation.stress is None:
        lines.append("stress     not defined (not periodic on all three axes)")
    else:
        lines.append(f"stress ({unit}/Å³):")
        for row in evaluation.stress.numpy():
            lines.append("  " + "  ".join(f"{v:13.6e}" for v in row))
    timings = result.timings
    lines.append(
        f"time       tuning {timings['tuning']:.3f} s, energy+forces+stress "
        f"{timings['evaluation']:.3f} s, total {timings['total']:.3f} s"
    )
    if madelung is not None:
        status = "OK" if madelung["passed"] else "FAILED"
        lines.append(
            f"Madelung check (perfect rock salt, {madelung['method']}): "
            f"M = {madelung['computed']:.7f}, reference {madelung['reference']:.7f}, "
            f"error {madelung['error']:.1e} (tolerance {madelung['tolerance']:.0e}) "
            f"{status}"
        )
    return "\n".join(lines)


def _accuracy_text(result: Result, target: float, unit: str) -> str:
    """The error estimate of what ran next to the requested target."""
    if result.parameters.method == "direct":
        return "exact (direct sum over all pairs)"
    if result.error is None:
        return f"target {target:.3g} {unit}/Å"
    return (
        f"{result.error:.3g} {unit}/Å (estimated RMS force error; "
        f"target {target:.3g} {unit}/Å)"
    )


def summary(atoms, charges, result: Result, args, madelung) -> dict:
    evaluation = result.evaluation
    from .engine import UNITS

    return {
        "n_atoms": len(atoms),
        "units": UNITS[args.units][1],
        "parameters": result.parameters.as_dict(),
        "accuracy": {"target": args.accuracy, "estimate": result.error},
        "energy": float(evaluation.energy),
        "forces": evaluation.forces.tolist(),
        "stress": None if evaluation.stress is None else evaluation.stress.tolist(),
        "potentials": evaluation.potentials.tolist(),
        "charges": [float(c) for c in result.charges],
        "qeq_iterations": result.qeq_iterations,
        "timings": result.timings,
        "madelung": madelung,
    }
