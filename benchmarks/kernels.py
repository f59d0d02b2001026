"""Where the time of one energy + forces step goes, kernel by kernel.

Runs the benchmark's step (rock salt, fixed parameters, our distance function) a
few times under ``torch.profiler`` and prints the operators (CPU) or kernels
(``--device cuda``) that took the most time, with their share of the step: the
first thing to read before making a step faster.

    python benchmarks/kernels.py --method p3m --size 32768
    python benchmarks/kernels.py --device cuda --method pme --size 262144 --top 20
"""

import argparse

import torch
from _systems import neighbors, rocksalt
from calculators import build, compile_calculator, energy_function

from torchpme.lib import get_ns_mesh
from torchpme.neighbors import pair_distances


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="pme", choices=["pme", "p3m", "ewald"])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--compile", action="store_true", help="torch.compile first")
    parser.add_argument(
        "--energy", action="store_true", help="the step calls calculator.energy"
    )
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    positions, charges, cell = rocksalt(args.size, dtype)
    calculator, cutoff = build(args.method, dtype, None, args.size)
    indices, shifts = neighbors(positions, cell, cutoff)
    positions, charges, cell, indices, shifts = (
        t.to(args.device) for t in (positions, charges, cell, indices, shifts)
    )
    calculator = calculator.to(args.device)
    compiled = None
    if args.compile:
        compiled = compile_calculator(calculator, cell, args.energy)
    elif args.method != "ewald":  # no host read of the cell, as in a CUDA graph
        calculator.fixed_mesh = get_ns_mesh(cell, calculator.mesh_spacing).tolist()
    cuda = torch.device(args.device).type == "cuda"
    total_energy = energy_function(calculator, indices, args.energy, compiled)

    def step():
        pos = positions.clone().requires_grad_(True)
        distances = pair_distances(pos, cell, indices, shifts)
        energy = total_energy(charges, cell, pos, distances)
        return torch.autograd.grad(energy, pos)[0]

    for _ in range(3):  # warm-up (and compilation)
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(args.steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = list(profile.key_averages())
    if cuda:  # the kernels only: an operator's device time is its kernels' again
        kernels = [e for e in events if str(e.device_type).endswith("CUDA")]
        events = kernels or events
    total = sum(getattr(event, key) for event in events) / args.steps
    print(
        f"{args.method} N = {args.size} {args.dtype} on {args.device}: "
        f"{total / 1e3:.2f} ms of {'kernel' if cuda else 'operator'} time per step"
    )
    rows = sorted(events, key=lambda event: getattr(event, key), reverse=True)
    for event in rows[: args.top]:
        own = getattr(event, key) / args.steps
        print(
            f"{own / 1e3:9.3f} ms {100 * own / total:5.1f}% "
            f"{event.count // args.steps:4d}x  {event.key[:90]}"
        )


if __name__ == "__main__":
    main()
