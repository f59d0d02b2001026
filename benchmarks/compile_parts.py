"""Which part of a compiled step departs from eager mode on a device.

Compiles, with ``fullgraph=True`` and the backends ``aot_eager`` (tracing and
autograd only) and ``inductor`` (generated kernels), four energies of the test
system of ``tests/test_cuda.py`` (PME and P3M) and prints the largest deviation of
the value and of each gradient from the eager result, relative to the largest
entry: the pair distances alone, the calculator on given distances (mesh and pair
parts), the calculator with the distances detached (mesh part only), and the whole
step. The exit status is 1 if an inductor result deviates by more than 1e-9.

``--whole`` checks only the whole step with inductor: a quick pass/fail command for
inductor's bisector, which names the first lowering or pass that makes a result
wrong (it found a mis-indexed vectorised scatter in the CPU code this way):

    python benchmarks/compile_parts.py pme p3m
    python -m torch._inductor.compiler_bisector run \\
        python benchmarks/compile_parts.py --whole pme
"""

import argparse
import os
import sys
import time

import torch

# the device of the checks: TORCHPME_TEST_DEVICE, else CUDA when there is one
os.environ.setdefault(
    "TORCHPME_TEST_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"
)
sys.path.insert(0, "tests")
import test_cuda as setup

from torchpme.neighbors import pair_distances

TOLERANCE = 1e-9


def energies(method: str) -> dict:
    """The four energies of ``method`` on the test system, with their inputs."""
    positions, charges, cell, pairs, shifts = setup.on(setup.DEVICE, setup.system())
    calculator = setup.FIXED_SHAPES[method]().to(setup.DEVICE)
    weights = torch.rand(len(pairs), dtype=positions.dtype, device=setup.DEVICE)
    distances = pair_distances(positions, cell, pairs, shifts).detach()

    def distances_only(pos, cel):
        return (weights * pair_distances(pos, cel, pairs, shifts)).sum()

    def given_distances(pos, dist):
        return (charges * calculator(charges, cell, pos, pairs, dist)).sum()

    def mesh_only(pos, dist):
        return given_distances(pos, dist.detach())

    def whole(pos, cel):
        dist = pair_distances(pos, cel, pairs, shifts)
        return (charges * calculator(charges, cel, pos, pairs, dist)).sum()

    return {
        "distances": (distances_only, (positions, cell)),
        "calculator(positions, distances)": (given_distances, (positions, distances)),
        "mesh part only": (mesh_only, (positions, distances)),
        "whole step": (whole, (positions, cell)),
    }


def value_and_gradients(function, inputs):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    value = function(*leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    zero = torch.zeros((), dtype=value.dtype, device=value.device)
    return [value.detach()] + [zero if g is None else g for g in grads]


def deviations(function, inputs, backend: str):
    """Relative deviations of the compiled value and gradients from eager mode."""
    reference = value_and_gradients(function, inputs)
    torch._dynamo.reset()
    compiled = torch.compile(function, fullgraph=True, backend=backend)
    result = value_and_gradients(compiled, inputs)
    return [
        float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))
        for a, b in zip(result, reference, strict=True)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="*", default=["pme", "p3m"])
    parser.add_argument("--whole", action="store_true", help="whole step, inductor")
    args = parser.parse_args()
    status = 0
    for method in args.methods:
        print(f"== {method}", flush=True)
        cases = energies(method)
        if args.whole:
            cases = {"whole step": cases["whole step"]}
        for label, (function, inputs) in cases.items():
            for backend in ("inductor",) if args.whole else ("aot_eager", "inductor"):
                start = time.perf_counter()
                try:
                    found = deviations(function, inputs, backend)
                except Exception as error:  # report and go on with the next case
                    print(f"{label:34} {backend:10} failed: {type(error).__name__}")
                    status = 1
                    continue
                if backend == "inductor" and max(found) > TOLERANCE:
                    status = 1
                print(
                    f"{label:34} {backend:10} value, gradients: "
                    + " ".join(f"{d:.1e}" for d in found)
                    + f"  ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    return status


if __name__ == "__main__":
    sys.exit(main())
