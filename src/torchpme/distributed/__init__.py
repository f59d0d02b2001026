"""One periodic system over many processes: PME and P3M on ``torch.distributed``.

Each rank holds the atoms of its domain (a slab of space along the first lattice
vector); the mesh is cut into the matching slabs of planes, the 3-D transform
into bands (local 2-D transforms and one ``all_to_all`` transpose each way), and
the real-space pairs use ghost atoms exchanged with the other ranks. The
communication runs through ``torch.distributed`` (gloo on CPU, NCCL on GPUs),
inside autograd maps, so forces, stress and charge gradients come from
``backward`` as in one process::

    import torch.distributed as dist
    from torchpme import CoulombPotential, P3MCalculator
    from torchpme.distributed import DistributedCalculator, migrate

    dist.init_process_group("gloo")  # under torchrun
    calculator = DistributedCalculator(
        P3MCalculator(CoulombPotential(smearing=1.0), mesh_spacing=0.5), cutoff=5.0
    )
    positions, charges = migrate(positions, charges, cell=cell)
    positions.requires_grad_(True)
    energy = calculator.energy(charges, cell, positions)  # the same on every rank
    energy.backward()  # positions.grad: minus the forces on this rank's atoms
"""

from .calculator import DistributedCalculator
from .collectives import rank_and_size, replicated, total
from .ghosts import domain_of, migrate
from .pairs import PairPlan

__all__ = [
    "DistributedCalculator",
    "PairPlan",
    "domain_of",
    "migrate",
    "rank_and_size",
    "replicated",
    "total",
]
