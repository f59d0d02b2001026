"""One crystal over several processes: forces and stress from torchpme.distributed.

A rock-salt crystal, slightly disordered, is split over the ranks of a
``torch.distributed`` process group: each rank keeps the ions of its domain (a
slab of the cell along the first lattice vector), and
:class:`~torchpme.distributed.DistributedCalculator` computes P3M for the whole
crystal from those shares. ``energy.backward()`` on every rank gives the forces on
the rank's own ions and the whole stress, as one process would; rank 0 checks
them against the single-process calculator. Then the ions move, as in an MD step:
the energy is right before they are handed to their new domains
(:func:`~torchpme.distributed.migrate`) and after.

Run on two CPU processes (it starts them itself)::

    python examples/08_distributed.py

or under ``torchrun`` (gloo on CPU; NCCL where every rank has a GPU)::

    torchrun --nproc_per_node=4 examples/08_distributed.py
"""

import os
import tempfile

import torch
import torch.distributed as dist

from torchpme import CoulombPotential, P3MCalculator
from torchpme.distributed import DistributedCalculator, migrate
from torchpme.neighbors import compute_neighbors

torch.set_default_dtype(torch.float64)

CUTOFF = 6.0


def crystal(repeats=4, spacing=2.82):
    """NaCl, ``repeats³`` conventional cells, ions displaced by up to 0.1 Å."""
    generator = torch.Generator().manual_seed(0)
    sites = torch.tensor(
        [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.float64
    )
    cells = torch.stack(
        torch.meshgrid(*[torch.arange(repeats)] * 3, indexing="ij"), -1
    ).reshape(-1, 1, 3)
    sodium = (2 * cells + sites).reshape(-1, 3)
    positions = torch.cat([sodium, sodium + torch.tensor([1.0, 0, 0])]) * spacing
    positions += 0.1 * (2 * torch.rand(positions.shape, generator=generator) - 1)
    charges = torch.cat([torch.ones(len(sodium)), -torch.ones(len(sodium))])
    cell = torch.eye(3) * 2 * repeats * spacing
    return cell, positions, charges.unsqueeze(1)


def single_process(calculator, cell, positions, charges):
    """Energy, forces and cell gradient of the whole crystal in one process."""
    cell = cell.clone().requires_grad_(True)
    positions = positions.clone().requires_grad_(True)
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    energy = calculator.energy(charges, cell, positions, indices, distances)
    energy.backward()
    return energy.detach(), -positions.grad, cell.grad


def main(device="cpu"):
    rank, size = dist.get_rank(), dist.get_world_size()
    p3m = P3MCalculator(CoulombPotential(smearing=1.5), mesh_spacing=0.7)
    calculator = DistributedCalculator(p3m, cutoff=CUTOFF)
    cell, positions, charges = (t.to(device) for t in crystal())
    ids = torch.arange(len(positions), dtype=torch.float64, device=device)

    # every rank starts from an arbitrary share; migrate hands ions to their domain
    start = slice(rank, None, size)
    local, local_charges, local_ids = migrate(
        positions[start], charges[start], ids[start], cell=cell
    )
    local_ids = local_ids.long()
    counts = [0] * size
    dist.all_gather_object(counts, len(local))

    shared_cell = cell.clone().requires_grad_(True)
    local = local.clone().requires_grad_(True)
    energy = calculator.energy(local_charges, shared_cell, local)
    energy.backward()
    energy, forces = energy.detach(), -local.grad

    expected_energy, expected_forces, expected_stress = single_process(
        p3m, cell, positions, charges
    )
    force_error = float((forces - expected_forces[local_ids]).abs().max())
    worst = torch.tensor(force_error, device=device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(f"{len(positions)} ions over {size} ranks: {counts} ions per rank")
        print(f"energy       {float(energy):.10f} (e²/Å, prefactor 1)")
        print(f"one process  {float(expected_energy):.10f}")
        print(f"largest force difference over all ranks: {float(worst):.1e}")
        stress_error = float((shared_cell.grad - expected_stress).abs().max())
        print(f"largest cell-gradient difference: {stress_error:.1e}")
        assert abs(float(energy - expected_energy)) < 1e-9
        assert float(worst) < 1e-9 and stress_error < 1e-9

    # an MD-like step: the ions move, some across domain boundaries
    moved = local.detach() + 0.4 * torch.sin(local.detach() + 1.0)
    before = calculator.energy(local_charges, cell, moved)
    moved, local_charges = migrate(moved, local_charges, cell=cell)
    after = calculator.energy(local_charges, cell, moved)
    # MD keeps its pairs between steps: a plan within cutoff + skin, renewed on
    # every rank once an ion has moved more than half the skin
    pairs = calculator.pair_plan(cell, moved, skin=1.0)
    kept = calculator.energy(local_charges, cell, moved, pairs=pairs)
    nudged = moved + 0.05
    pairs = calculator.pair_plan(cell, nudged, skin=1.0, previous=pairs)
    fresh = calculator.energy(local_charges, cell, nudged)
    reused = calculator.energy(local_charges, cell, nudged, pairs=pairs)
    if rank == 0:
        print(f"after a step: {float(before):.10f} before migrating, "
              f"{float(after):.10f} after, {float(kept):.10f} with kept pairs")  # fmt: skip
        print(f"nudged: {float(fresh):.10f} searched, {float(reused):.10f} "
              "with the same kept pairs")  # fmt: skip
        assert abs(float(before - after)) < 1e-9
        assert abs(float(kept - after)) < 1e-9 and abs(float(reused - fresh)) < 1e-9


def spawned(rank, size, folder):
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/store", rank=rank, world_size=size
    )
    torch.set_num_threads(1)
    try:
        main()
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if "RANK" in os.environ:  # started by torchrun
        device = "cpu"
        if torch.cuda.is_available():
            device = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device != "cpu" else "gloo")
        try:
            main(device)
        finally:
            dist.destroy_process_group()
    else:
        with tempfile.TemporaryDirectory() as folder:
            torch.multiprocessing.spawn(spawned, args=(2, folder), nprocs=2)
