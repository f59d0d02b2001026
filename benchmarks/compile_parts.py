"""Which part of a compiled step departs from eager mode on a device.

Compiles, with ``fullgraph=True`` and the backends ``aot_eager`` (tracing and
autograd only) and ``inductor`` (generated kernels), four energies of the test
system of ``tests/test_cuda.py`` (PME and P3M) and prints the largest deviation of the value and
of each gradient from the eager result: the pair distances alone, the calculator on
given distances (mesh and pair parts), the calculator with the distances detached
(mesh part only), and the whole step. Run from the repository root:

    TORCHPME_TEST_DEVICE=cuda python benchmarks/compile_parts.py [pme|p3m ...]
"""

import sys
import time

import torch

sys.path.insert(0, "tests")
import test_cuda as setup

from torchpme.neighbors import pair_distances


def main():
    for method in sys.argv[1:] or ["pme", "p3m"]:
        print(f"== {method}", flush=True)
        compare_parts(method)


def compare_parts(method: str):
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

    cases = {
        "distances": (distances_only, (positions, cell)),
        "calculator(positions, distances)": (given_distances, (positions, distances)),
        "mesh part only": (mesh_only, (positions, distances)),
        "whole step": (whole, (positions, cell)),
    }
    for label, (energy, inputs) in cases.items():

        def run(function, inputs=inputs):
            leaves = [t.clone().requires_grad_(True) for t in inputs]
            value = function(*leaves)
            grads = torch.autograd.grad(value, leaves, allow_unused=True)
            zero = torch.zeros((), dtype=value.dtype, device=value.device)
            return [value.detach()] + [zero if g is None else g for g in grads]

        reference = run(energy)
        for backend in ("aot_eager", "inductor"):
            torch._dynamo.reset()
            start = time.perf_counter()
            try:
                result = run(torch.compile(energy, fullgraph=True, backend=backend))
            except Exception as error:  # report and go on with the next case
                print(f"{label:34} {backend:10} failed: {type(error).__name__}")
                continue
            deviations = [float((a - b).abs().max()) for a, b in zip(result, reference)]
            print(
                f"{label:34} {backend:10} value, gradients: "
                + " ".join(f"{d:.1e}" for d in deviations)
                + f"  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
