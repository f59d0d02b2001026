"""One system over 2, 3 and 4 gloo processes equals the single-process
calculators: energies, potentials, forces, cell and charge gradients, for atoms
handed to their domains, domains left empty, atoms at random ranks and atoms that
moved across domains since; a training loss with forces (second derivatives
across ranks); the same error on every rank when ranks disagree."""

import pytest
import torch
import torch.distributed as dist
from distributed_worker import CUTOFF, system, worker

from torchpme import CoulombPotential, EwaldCalculator, P3MCalculator, PMECalculator
from torchpme.distributed import DistributedCalculator, domain_of, migrate
from torchpme.neighbors import compute_neighbors

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="the gloo backend of torch.distributed is missing",
)

TOLERANCE = 1e-12


@needs_gloo
@pytest.mark.parametrize("size", [2, 3, 4])
def test_ranks_equal_one_process(size, tmp_path):
    torch.multiprocessing.spawn(
        worker, args=(size, str(tmp_path)), nprocs=size, join=True
    )
    for rank in range(size):
        errors = torch.load(f"{tmp_path}/{rank}.pt")
        messages = errors.pop("disagreement messages")
        assert len(messages) == 2, messages
        assert messages[0].startswith("`cell` must be the same on every rank")
        assert f"ranks [{size - 1}]" in messages[0]
        assert messages[1].startswith("the inputs requiring gradients")
        worst = {key: value for key, value in errors.items() if value > TOLERANCE}
        assert not worst, worst
        assert len(errors) > 20


def test_one_process_equals_calculator():
    cell, positions, charges = system(7)
    calculator = P3MCalculator(CoulombPotential(smearing=0.7), 0.5, 4)
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    expected = calculator(charges, cell, positions, indices, distances)
    result = DistributedCalculator(calculator, CUTOFF)(charges, cell, positions)
    torch.testing.assert_close(result, expected, rtol=TOLERANCE, atol=TOLERANCE)


def test_domains_and_migrate_in_one_process():
    cell, positions, charges = system(8)
    owners = domain_of(positions, cell, 4)
    fractional = (positions @ torch.linalg.inv(cell))[:, 0] % 1.0
    assert torch.equal(owners, torch.floor(fractional * 4).long())
    moved, moved_charges = migrate(positions, charges, cell=cell)
    assert torch.equal(moved, positions) and torch.equal(moved_charges, charges)


def test_bad_arguments():
    pme = PMECalculator(CoulombPotential(smearing=0.7), 0.5)
    with pytest.raises(TypeError, match="calculator"):
        DistributedCalculator(EwaldCalculator(CoulombPotential(smearing=0.7), 1.0), 2.0)
    with pytest.raises(ValueError, match="smearing"):
        DistributedCalculator(PMECalculator(CoulombPotential(), 0.5), 2.0)
    with pytest.raises(ValueError, match="cutoff"):
        DistributedCalculator(pme, 0.0)
    cell, positions, charges = system(9, n_atoms=6)
    module = DistributedCalculator(pme, CUTOFF)
    with pytest.raises(ValueError, match="charges"):
        module(charges[:3], cell, positions)
    with pytest.raises(TypeError, match="positions"):
        module(charges, cell, positions.float())
