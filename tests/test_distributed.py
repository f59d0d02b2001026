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
from torchpme.distributed import DistributedCalculator, domain_of, migrate, slabs
from torchpme.distributed.convolution import slab_convolution, slab_energy
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
        assert errors.pop("kept pairs checks") == [True] * 5
        halos = errors.pop("halo planes")
        assert halos and all(extra <= nodes for extra, nodes in halos), halos
        assert len(messages) == 4, messages
        assert "`charges` must be of shape" in messages[2]
        assert "coincident" in messages[3]
        if rank != 1:
            assert messages[2].startswith("rank 1 of the process group refused")
        assert messages[0].startswith("`cell` must be the same on every rank")
        assert f"ranks [{size - 1}]" in messages[0]
        assert messages[1].startswith("the inputs requiring gradients")
        worst = {key: value for key, value in errors.items() if value > TOLERANCE}
        assert not worst, worst
        assert len(errors) > 20


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_one_process_equals_calculator(dtype):
    cell, positions, charges = (t.to(dtype) for t in system(7))
    calculator = P3MCalculator(CoulombPotential(smearing=0.7), 0.5, 4)
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    expected = calculator(charges, cell, positions, indices, distances)
    result = DistributedCalculator(calculator, CUTOFF)(charges, cell, positions)
    assert result.dtype == dtype
    tolerance = TOLERANCE if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(result, expected, rtol=tolerance, atol=tolerance)


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


@pytest.mark.parametrize(
    "arc", [[0, 5], [2, 5], [3, 3]], ids=["whole", "wrapped", "part"]
)
def test_slab_functions_gradcheck(arc):
    """The written adjoints of the mesh energy and convolution (one process; a
    buffer of ``arc``'s planes, wrapped or partial) against finite differences,
    to second order, for the mesh and the filter."""
    shape = [4, 3, 4]
    layout = slabs.slab_layout(shape, 0, 1)
    halo = slabs.halo_plan([arc], layout, torch.device("cpu"))
    generator = torch.Generator().manual_seed(3)
    options = {"dtype": torch.float64, "generator": generator}
    buffer = torch.randn([1, arc[1]] + shape[1:], **options).requires_grad_(True)
    kernel = torch.rand([shape[0], shape[1], shape[2] // 2 + 1], **options)
    kernel.requires_grad_(True)

    def energy(b, k):
        return slab_energy(b, k, layout, halo, None)

    def convolution(b, k):
        return slab_convolution(b, k, layout, halo, None)

    for function in (energy, convolution):
        assert torch.autograd.gradcheck(function, (buffer, kernel), fast_mode=True)
        assert torch.autograd.gradgradcheck(function, (buffer, kernel), fast_mode=True)
    # the energy is the overlap of the buffer with its convolution, on a buffer
    # that covers each plane once
    if arc[1] == shape[0]:
        expected = torch.sum(buffer * convolution(buffer, kernel))
        torch.testing.assert_close(energy(buffer, kernel), expected)
