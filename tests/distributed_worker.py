"""The work of one rank in tests/test_distributed.py: every rank builds the whole
system from the same seed, evaluates its share with the distributed calculator and
the whole with the single-process one, and saves the largest differences."""

import numpy as np
import torch
import torch.distributed as dist

from torchpme import (
    CoulombPotential,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
)
from torchpme.distributed import DistributedCalculator, migrate, total
from torchpme.neighbors import compute_neighbors

CUTOFF = 2.6
DTYPE = torch.float64


def system(seed, n_atoms=48, squeeze=1.0, stretch=1.0):
    """A triclinic cell ``stretch`` times longer along its first lattice vector
    (long cells leave ranks atoms beyond the cutoff: no ghosts) with random atoms
    (all within ``squeeze`` of the first fractional range: ``squeeze < 1``
    leaves domains empty) and a net charge."""
    rng = np.random.default_rng(seed)
    cell = np.diag([5.6 * stretch, 5.0, 5.3]) + rng.uniform(-0.6, 0.6, size=(3, 3))
    fractional = rng.uniform(0.0, 1.0, size=(n_atoms, 3))
    fractional[:, 0] *= squeeze
    positions = fractional @ cell
    charges = rng.normal(size=(n_atoms, 1)) + 0.05
    return tuple(torch.tensor(a, dtype=DTYPE) for a in (cell, positions, charges))


def calculators():
    yield "pme-coulomb", PMECalculator(CoulombPotential(smearing=0.7), 0.45)
    yield "p3m-coulomb", P3MCalculator(CoulombPotential(smearing=0.7), 0.5, 5)
    # the influence function that is not a product of 1-D factors: sliced to
    # each rank's band from k-vectors
    yield (
        "p3m-cartesian",
        P3MCalculator(CoulombPotential(smearing=0.7), 0.5, 4, cartesian_influence=True),
    )
    power = InversePowerLawPotential(exponent=3.0, smearing=0.7)
    yield "p3m-r3", P3MCalculator(power, 0.5, 4)
    # a mesh with fewer first-axis planes than ranks, odd sizes
    yield (
        "pme-thin",
        PMECalculator(CoulombPotential(smearing=0.8), 0.5, 4, fixed_mesh=[3, 10, 9]),
    )


def probe_weights(n_atoms):
    """Fixed per-atom weights: ``Σ_i w_i V_i`` differentiates the potentials
    (not only the energy) with respect to every input."""
    return torch.cos(torch.arange(n_atoms, dtype=DTYPE)).unsqueeze(1)


def reference(calculator, cell, positions, charges):
    """Energy, potentials and the gradients with respect to charges, positions
    and cell of the energy and of ``Σ w V``, of the whole system in one
    process."""
    cell = cell.clone().requires_grad_(True)
    positions = positions.clone().requires_grad_(True)
    charges = charges.clone().requires_grad_(True)
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    potentials = calculator(charges, cell, positions, indices, distances)
    energy = torch.sum(charges * potentials)
    inputs = [charges, positions, cell]
    grads = torch.autograd.grad(energy, inputs, retain_graph=True)
    probe = torch.sum(probe_weights(len(charges)) * potentials)
    probed = torch.autograd.grad(probe, inputs)
    return [energy.detach(), potentials.detach(), *grads, *probed]


def distributed(calculator, cell, positions, charges, ids, group):
    """The same from this rank's atoms (``ids`` of the whole system)."""
    cell = cell.clone().requires_grad_(True)
    weights = probe_weights(len(charges))[ids]
    positions = positions[ids].clone().requires_grad_(True)
    charges = charges[ids].clone().requires_grad_(True)
    module = DistributedCalculator(calculator, CUTOFF, group)
    potentials = module(charges, cell, positions)
    energy = module.energy(charges, cell, positions)
    inputs = [charges, positions, cell]
    grads = torch.autograd.grad(energy, inputs)
    probe = total(torch.sum(weights * potentials))
    probed = torch.autograd.grad(probe, inputs)
    return [energy.detach(), potentials.detach(), *grads, *probed]


def compare(name, mine, whole, ids, errors):
    """Largest differences, relative to the largest value of each quantity."""
    labels = ["energy", "potentials", "charge gradient", "forces", "cell gradient"]
    labels += ["probe charge gradient", "probe forces", "probe cell gradient"]
    for label, a, b, local in zip(labels, mine, whole, [0, 1, 1, 1, 0, 1, 1, 0]):
        b = b[ids] if local else b
        scale = max(float(b.abs().max()) if b.numel() else 0.0, 1.0)
        error = float((a - b).abs().max()) / scale if a.numel() else 0.0
        errors[f"{name} {label}"] = max(errors.get(f"{name} {label}", 0.0), error)


def halo_planes(calculator, cell, positions, charges, errors):
    """The planes of this rank's buffer beyond its own slab, for atoms in their
    domains: at most a stencil's width, on either side."""
    module = DistributedCalculator(calculator, CUTOFF)
    step = module._step(charges, cell, positions, None)
    extra = step.plan.shape[0] - step.halo.slab
    if step.layout.shape[0] >= 4 * calculator.interpolation_nodes:  # thick slabs
        errors.setdefault("halo planes", []).append(
            (extra, calculator.interpolation_nodes)
        )


def shares(rank, size, n_atoms, positions, cell, how, seed):
    """This rank's atom ids: by domain (through ``migrate``) or at random."""
    ids = torch.arange(n_atoms)
    if how == "random":
        owner = torch.from_numpy(np.random.default_rng(seed).integers(0, size, n_atoms))
        return ids[owner == rank]
    start = ids[rank::size]  # any start: migrate hands atoms to their owners
    moved = migrate(positions[start], ids[start].to(DTYPE), cell=cell)
    return moved[1].to(torch.int64)


def run_cases(rank, size, errors):
    cases = [
        (1, 1.0, 3.0, "domains"),
        (2, 0.3, 1.0, "domains"),
        (3, 1.0, 2.0, "random"),
    ]
    for seed, squeeze, stretch, how in cases:
        n_atoms = int(48 * stretch)
        cell, positions, charges = system(seed, n_atoms, squeeze, stretch)
        if how == "random":  # two charge channels
            charges = torch.cat([charges, 0.5 * charges.flip(0)], dim=1)
        for name, calculator in calculators():
            ids = shares(rank, size, len(positions), positions, cell, how, seed)
            whole = reference(calculator, cell, positions, charges)
            mine = distributed(calculator, cell, positions, charges, ids, None)
            compare(name, mine, whole, ids, errors)
            if how == "domains":
                halo_planes(calculator, cell, positions[ids], charges[ids], errors)
            # the next step: atoms move, some across domains, without migration
            moved = positions + 0.4 * torch.sin(7.0 * positions + seed)
            whole = reference(calculator, cell, moved, charges)
            mine = distributed(calculator, cell, moved, charges, ids, None)
            compare(f"{name} moved", mine, whole, ids, errors)


def lattice_ties(rank, size, errors):
    """A perfect rock-salt-like lattice at random ranks: many pairs across ranks
    with atoms in the same lattice plane (``Δs₀ = 0``), each computed once."""
    repeats, spacing = 4, 1.4
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(repeats)] * 3, indexing="ij"), -1
    ).reshape(-1, 3)
    positions = grid.to(DTYPE) * spacing
    charges = (1.0 - 2.0 * (grid.sum(1) % 2)).to(DTYPE).unsqueeze(1)
    cell = torch.eye(3, dtype=DTYPE) * repeats * spacing
    calculator = PMECalculator(CoulombPotential(smearing=0.6), 0.4)
    ids = shares(rank, size, len(positions), positions, cell, "random", 5)
    whole = reference(calculator, cell, positions, charges)
    mine = distributed(calculator, cell, positions, charges, ids, None)
    compare("lattice", mine, whole, ids, errors)


def kept_pairs(rank, size, errors):
    """A pair plan kept between steps (a Verlet list with a skin): reused while
    atoms move less than half the skin (energies and forces still equal one
    process), renewed on every rank once one atom moves further, and a stale
    plan refused on every rank."""
    cell, positions, charges = system(6, 96, 1.0, 2.0)
    calculator = PMECalculator(CoulombPotential(smearing=0.7), 0.45)
    module = DistributedCalculator(calculator, CUTOFF)
    ids = shares(rank, size, len(positions), positions, cell, "domains", 0)
    plan = module.pair_plan(cell, positions[ids], skin=0.6)
    direction = torch.sin(3.0 * positions + 1.0)
    messages = []
    for step, shift in enumerate([0.0, 0.1, 0.2]):  # moves < 0.3 = skin / 2
        moved = positions + shift * direction / direction.norm(dim=1, keepdim=True)
        again = module.pair_plan(cell, moved[ids], skin=0.6, previous=plan)
        messages.append(again is plan)
        whole = reference(calculator, cell, moved, charges)
        local = moved[ids].clone().requires_grad_(True)
        energy = module.energy(charges[ids], cell, local, pairs=plan)
        (grad,) = torch.autograd.grad(energy, local)
        scale = float(whole[3].abs().max())
        errors[f"kept pairs {step} energy"] = abs(float(energy - whole[0]))
        errors[f"kept pairs {step} forces"] = float(
            (grad - whole[3][ids]).abs().max() / scale
        )
    far = positions.clone()
    far[0] += 0.5  # atom 0 moves beyond half the skin: every rank renews
    renewed = module.pair_plan(cell, far[ids], skin=0.6, previous=plan)
    messages.append(renewed is not plan)
    try:
        module.energy(charges[ids], cell, far[ids], pairs=plan)
    except ValueError as error:
        messages.append("half the skin" in str(error))
    errors["kept pairs checks"] = messages


def training(rank, size, errors):
    """Gradient of a loss with energies and forces (a second derivative across
    ranks) with respect to learnable per-species charges."""
    cell, positions, _ = system(4)
    species = torch.arange(len(positions)) % 3
    calculator = P3MCalculator(CoulombPotential(smearing=0.7), 0.5, 4)

    def loss(energy, positions_grad):
        return (energy - 1.0) ** 2 + 0.1 * torch.sum(positions_grad**2)

    weights = torch.tensor([0.8, -0.5, 0.2], dtype=DTYPE, requires_grad=True)
    moving = positions.clone().requires_grad_(True)
    charges = weights[species].unsqueeze(1)
    indices, distances = compute_neighbors(moving, cell, CUTOFF)
    energy = torch.sum(charges * calculator(charges, cell, moving, indices, distances))
    (force,) = torch.autograd.grad(energy, moving, create_graph=True)
    whole_loss = loss(energy, force)
    (expected,) = torch.autograd.grad(whole_loss, weights)

    ids = shares(rank, size, len(positions), positions, cell, "domains", 0)
    local = positions[ids].clone().requires_grad_(True)
    charges = weights[species[ids]].unsqueeze(1)
    module = DistributedCalculator(calculator, CUTOFF)
    energy = module.energy(charges, cell, local)
    (force,) = torch.autograd.grad(energy, local, create_graph=True)
    # the loss of the forces is a sum over atoms: each rank's share, totalled
    forces_part = torch.sum(force**2)
    mine_loss = (energy - 1.0) ** 2 + 0.1 * total(forces_part)
    (gradient,) = torch.autograd.grad(mine_loss, weights)
    dist.all_reduce(gradient)  # each rank's share of a replicated parameter
    errors["training loss"] = abs(float(mine_loss - whole_loss))
    scale = float(expected.abs().max())
    errors["training gradient"] = float((gradient - expected).abs().max()) / scale


def disagreement(rank, size, errors):
    """A rank with another cell, then with other inputs requiring gradients: the
    same ValueError on every rank, no hang."""
    cell, positions, charges = system(5, n_atoms=12)
    module = DistributedCalculator(
        PMECalculator(CoulombPotential(smearing=0.7), 0.5), CUTOFF
    )
    ids = torch.arange(rank, len(positions), size)
    local_cell = cell * (1.0 + 1e-9) if rank == size - 1 else cell
    messages = []
    try:
        module.energy(charges[ids], local_cell, positions[ids])
    except ValueError as error:
        messages.append(str(error))
    local = positions[ids].clone().requires_grad_(rank == 0)
    try:
        module.energy(charges[ids], cell, local)
    except ValueError as error:
        messages.append(str(error))
    # one rank's inputs refused (wrong shape; coincident with a ghost atom):
    # every rank raises, quoting it
    wrong = charges[ids][:-1] if rank == 1 else charges[ids]
    try:
        module.energy(wrong, cell, positions[ids])
    except ValueError as error:
        messages.append(str(error))
    clash = positions[ids].clone()
    if rank == 1:
        clash[0] = positions[0]  # atom 0 lives on rank 0
    try:
        module.energy(charges[ids], cell, clash)
    except ValueError as error:
        messages.append(str(error))
    errors["disagreement messages"] = messages


def worker(rank, size, directory):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/store", rank=rank, world_size=size
    )
    try:
        errors = {}
        run_cases(rank, size, errors)
        lattice_ties(rank, size, errors)
        kept_pairs(rank, size, errors)
        training(rank, size, errors)
        disagreement(rank, size, errors)
        torch.save(errors, f"{directory}/{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()
