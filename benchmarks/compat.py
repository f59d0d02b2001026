"""Differential compatibility check: the same torch-pme 0.5 API calls, two implementations.

Runs every case of ``benchmarks/compat_cases`` in this interpreter (``torchpme`` as
installed here) and in another one that has torch-pme 0.5 installed, and compares the
outcomes call by call: the same values (float64 to ``rtol`` 1e-10 unless a case says
otherwise; the same dtypes and shapes), or the same exception type (the other
implementation's exception class among the bases of ours). Cases marked with a
deliberate difference are reported apart with their reason.

Usage::

    python -m venv /tmp/tpme && /tmp/tpme/bin/pip install torch==2.13.0 \
        "torch-pme==0.5.*" numpy scipy ase vesin
    python benchmarks/compat.py --other /tmp/tpme/bin/python [--only NAME] [--json F]

Exit status 1 when an undeclared difference is found.
"""

import argparse
import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#: relative tolerance of float32 results (the corpus's own ``rtol`` is for float64)
SINGLE_RTOL = 1e-4


def plain(value):
    """A picklable, library-free form of a case's result."""
    import torch

    if isinstance(value, torch.Tensor):
        data = value.detach().cpu()
        numbers = data.to(torch.float64) if data.is_floating_point() else data
        return ("tensor", str(value.dtype), tuple(value.shape), numbers.numpy().copy())
    if isinstance(value, np.generic):
        return ("number", value.item())
    if isinstance(value, (bool, int, float, str, type(None))):
        return ("number", value)
    if isinstance(value, (list, tuple)):
        return ("sequence", [plain(item) for item in value])
    if isinstance(value, dict):
        return ("mapping", {str(key): plain(item) for key, item in value.items()})
    return ("object", type(value).__name__)


def run_cases(names, output: str) -> None:
    """Worker: run the named cases here and pickle their outcomes to ``output``."""
    import torch

    sys.path.insert(0, HERE)
    import compat_cases

    import torchpme

    torch.set_num_threads(1)
    cases = compat_cases.load_all()
    outcomes = {}
    for name in names or sorted(cases):
        torch.manual_seed(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = cases[name].run(torchpme)
            outcomes[name] = {"value": plain(result)}
        except Exception as error:  # the outcome under comparison
            bases = [cls.__name__ for cls in type(error).__mro__]
            outcomes[name] = {
                "raises": type(error).__name__,
                "bases": bases,
                "message": str(error).strip().splitlines()[0][:160]
                if str(error)
                else "",
                "where": traceback.extract_tb(error.__traceback__)[-1].name,
            }
    with open(output, "wb") as handle:
        pickle.dump(outcomes, handle)


def differences(
    ours, other, rtol: float, atol: float, path: str = "", scaled: bool = False
) -> list:
    """Where two plain results differ, as readable lines (empty when they agree);
    ``scaled``: ``atol`` is relative to the largest entry of each tensor."""
    if ours[0] != other[0]:
        return [f"{path or 'result'}: {ours[0]} here, {other[0]} there"]
    kind = ours[0]
    if kind == "tensor":
        _, dtype, shape, values = ours
        _, other_dtype, other_shape, other_values = other
        # a deliberate difference (``scaled``) may be one of dtype; never of shape
        if (dtype != other_dtype and not scaled) or shape != other_shape:
            return [
                f"{path}: {dtype}{list(shape)} here, {other_dtype}{list(other_shape)}"
            ]
        if values.size == 0:
            return []
        if scaled:
            atol = atol * float(np.nanmax(np.abs(other_values), initial=0.0))
        if dtype in ("torch.float32", "torch.complex64"):
            # single precision: another order of the same operations moves the
            # last digits, by a fraction of the largest entry
            scale = float(np.nanmax(np.abs(other_values), initial=0.0))
            rtol, atol = max(rtol, SINGLE_RTOL), max(atol, SINGLE_RTOL * scale)
        both_nan = np.isnan(values) & np.isnan(other_values)
        close = np.isclose(values, other_values, rtol=rtol, atol=atol) | both_nan
        if close.all():
            return []
        scale = np.abs(other_values).max()
        worst = np.nanmax(np.abs(values - other_values)) / max(scale, atol)
        return [f"{path}: values differ, max |Δ|/max|ref| = {worst:.2e}"]
    if kind == "number":
        a, b = ours[1], other[1]
        if isinstance(a, float) and isinstance(b, (int, float)):
            atol = atol * abs(b) if scaled else atol
            if np.isclose(a, b, rtol=rtol, atol=atol) or (np.isnan(a) and np.isnan(b)):
                return []
        if a == b:
            return []
        return [f"{path}: {a!r} here, {b!r} there"]
    if kind == "sequence":
        if len(ours[1]) != len(other[1]):
            return [f"{path}: {len(ours[1])} items here, {len(other[1])} there"]
        found = []
        for index, (a, b) in enumerate(zip(ours[1], other[1])):
            found += differences(a, b, rtol, atol, f"{path}[{index}]", scaled)
        return found
    if kind == "mapping":
        if sorted(ours[1]) != sorted(other[1]):
            return [f"{path}: keys {sorted(ours[1])} here, {sorted(other[1])} there"]
        found = []
        for key in ours[1]:
            found += differences(
                ours[1][key], other[1][key], rtol, atol, f"{path}.{key}", scaled
            )
        return found
    if ours[1] != other[1]:
        return [f"{path}: {ours[1]} object here, {other[1]} there"]
    return []


def compare(case, ours: dict, other: dict, scaled: bool = False) -> list:
    """The differences between the outcomes of one case in the two interpreters."""
    if "raises" in other:
        if "raises" not in ours:
            return [f"returns here, raises {other['raises']} there: {other['message']}"]
        if other["raises"] not in ours["bases"]:
            return [
                f"raises {ours['raises']} here ({ours['message']}), "
                f"{other['raises']} there ({other['message']})"
            ]
        return []
    if "raises" in ours:
        return [f"raises {ours['raises']} here: {ours['message']}"]
    return differences(ours["value"], other["value"], case.rtol, case.atol, "", scaled)


def collect(python: str, names, workdir: str, label: str) -> dict:
    output = os.path.join(workdir, f"{label}.pkl")
    command = [python, os.path.abspath(__file__), "--worker", output, *names]
    # run outside the source tree so that each interpreter imports its own torchpme
    subprocess.run(command, check=True, cwd=workdir)
    with open(output, "rb") as handle:
        return pickle.load(handle)


def write_markdown(path, compared, same, deliberate, failed, cases) -> None:
    """The summary and one row per reason of a deliberate difference, for the docs."""
    reasons: dict = {}
    for name, _ in deliberate:
        reasons.setdefault(cases[name].differs, []).append(name)
    lines = [
        f"{compared} calls compared: {same} agree, {len(deliberate)} differ on "
        f"purpose, {len(failed)} differ.",
        "",
        "| reason | calls |",
        "| --- | --- |",
    ]
    for reason, names in sorted(reasons.items()):
        cell = reason.replace("|", "\\|")
        lines.append(f"| {cell} | {', '.join(f'`{n}`' for n in names)} |")
    for name, found in failed:
        cell = "; ".join(found).replace("|", "\\|")
        lines.append(f"| **not resolved**: {cell} | `{name}` |")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", help="python of the torch-pme 0.5 environment")
    parser.add_argument("--only", default="", help="run the cases whose name has this")
    parser.add_argument("--json", help="write the comparison rows here")
    parser.add_argument(
        "--markdown", help="write the summary and the deliberate differences here"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_cases(args.names, args.worker)
        return 0
    if not args.other:
        parser.error("--other PYTHON (an interpreter with torch-pme 0.5) is required")

    sys.path.insert(0, HERE)
    import compat_cases

    cases = compat_cases.load_all()
    for module, error in compat_cases.BROKEN.items():
        print(f"corpus module {module} does not import: {error}")
    names = [name for name in sorted(cases) if args.only in name]
    with tempfile.TemporaryDirectory() as workdir:
        ours = collect(sys.executable, names, workdir, "ours")
        other = collect(args.other, names, workdir, "other")

    rows, failed, deliberate = [], [], []
    for name in names:
        this = cases[name]
        found = compare(this, ours[name], other[name])
        beyond = found if not this.differs else []
        if found and this.differs and this.within is not None:
            # a deliberate difference stays within ``within`` of each result's
            # largest entry
            loose = dataclasses.replace(this, rtol=0.0, atol=this.within)
            beyond = compare(loose, ours[name], other[name], scaled=True)
        rows.append({"case": name, "differences": found, "differs": this.differs})
        if found and this.differs and not beyond:
            deliberate.append((name, found))
        elif found:
            failed.append((name, found))
    same = len(names) - len(failed) - len(deliberate)
    print(
        f"compatibility: {len(names)} calls compared, {same} agree, "
        f"{len(deliberate)} differ on purpose, {len(failed)} differ"
    )
    for name, found in deliberate:
        print(f"  on purpose  {name}: {cases[name].differs}")
        for line in found:
            print(f"                {line}")
    for name, found in failed:
        print(f"  DIFFERS     {name}")
        for line in found:
            print(f"                {line}")
    if args.markdown:
        write_markdown(args.markdown, len(names), same, deliberate, failed, cases)
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
