"""DistributedDataParallel: learnable per-species charges of a PME model.

Two processes (gloo backend, meeting through a file store, so that no port has to
be chosen in advance) each take half of a small data set of
periodic systems; DDP averages their gradients. Because each rank's loss is the
mean over an equal share, the averaged gradient must equal the gradient of the
mean loss over the whole data set in one process — checked to 1e-12 over a few
SGD steps, together with the parameters after each step.
"""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from reference import neighbor_list

from torchpme import CoulombPotential, PMECalculator

N_SYSTEMS = 4
N_SPECIES = 3
STEPS = 3
LEARNING_RATE = 0.05


class SpeciesChargesPME(torch.nn.Module):
    """Energy of a system from learnable per-species charges with PME."""

    def __init__(self):
        super().__init__()
        self.species_charges = torch.nn.Parameter(
            torch.tensor([0.6, -0.4, 0.1], dtype=torch.float64)
        )
        self.calculator = PMECalculator(
            CoulombPotential(smearing=0.6), mesh_spacing=0.4, interpolation_nodes=4
        )

    def forward(self, species, cell, positions, pairs, distances):
        charges = self.species_charges[species].unsqueeze(-1)
        potentials = self.calculator(charges, cell, positions, pairs, distances)
        return torch.sum(charges * potentials)


def dataset():
    """Small random systems with species labels and target energies."""
    rng = np.random.default_rng(2024)
    true_charges = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    target_model = SpeciesChargesPME()
    with torch.no_grad():
        target_model.species_charges.copy_(true_charges)
    systems = []
    for _ in range(N_SYSTEMS):
        lengths = rng.uniform(3.5, 4.5, size=3)
        cell = np.diag(lengths) + rng.uniform(-0.3, 0.3, size=(3, 3))
        n_atoms = int(rng.integers(3, 6))
        positions = rng.uniform(0.0, 1.0, size=(n_atoms, 3)) @ cell
        species = torch.from_numpy(rng.integers(0, N_SPECIES, size=n_atoms))
        pairs, shifts = neighbor_list(positions, cell, 3.0)
        vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]
        inputs = (
            species,
            torch.tensor(cell),
            torch.tensor(positions),
            torch.from_numpy(pairs),
            torch.tensor(np.linalg.norm(vectors, axis=1)),
        )
        with torch.no_grad():
            target = target_model(*inputs)
        systems.append((inputs, target))
    return systems


def train(model, systems, parameters):
    """SGD steps on the mean squared energy error; returns the gradients and the
    parameters after each step."""
    optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE)
    gradients, values = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = sum((model(*inputs) - target) ** 2 for inputs, target in systems)
        (loss / len(systems)).backward()
        gradients.append(parameters[0].grad.detach().clone())
        optimizer.step()
        values.append(parameters[0].detach().clone())
    return torch.stack(gradients), torch.stack(values)


def _worker(rank, world_size, directory):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{directory}/store",
        rank=rank,
        world_size=world_size,
    )
    try:
        share = N_SYSTEMS // world_size
        systems = dataset()[rank * share : (rank + 1) * share]
        model = torch.nn.parallel.DistributedDataParallel(SpeciesChargesPME())
        gradients, values = train(model, systems, [model.module.species_charges])
        torch.save({"gradients": gradients, "values": values}, f"{directory}/{rank}.pt")
        # both ranks done before either tears down: a rank leaving while the other
        # still talks to it can abort gloo (seen once as SIGABRT)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.skipif(
    not dist.is_gloo_available(), reason="gloo backend of torch.distributed missing"
)
def test_ddp_gradients_equal_single_process(tmp_path):
    model = SpeciesChargesPME()
    expected_gradients, expected_values = train(
        model, dataset(), [model.species_charges]
    )
    assert float(expected_gradients[0].abs().max()) > 1e-3  # a real signal

    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"{rank}.pt")
        torch.testing.assert_close(
            result["gradients"], expected_gradients, atol=1e-12, rtol=0
        )
        torch.testing.assert_close(
            result["values"], expected_values, atol=1e-12, rtol=0
        )
