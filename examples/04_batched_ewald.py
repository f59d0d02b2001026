"""Many small structures at once: Ewald with padding, masks and ``torch.vmap``.

Structures of different sizes are padded to a common number of atoms and pairs;
``node_mask`` and ``pair_mask`` mark the real entries, and
:func:`torchpme.lib.compute_batched_kvectors` gives every cell its own k-vectors,
padded with zero vectors (which add nothing to a Coulomb sum). ``torch.vmap``
then maps :meth:`EwaldCalculator.forward` over the batch, and the result equals
one call per structure.

Run: ``python examples/04_batched_ewald.py``
"""

import torch

from torchpme.calculators import EwaldCalculator
from torchpme.lib import compute_batched_kvectors
from torchpme.neighbors import compute_neighbors
from torchpme.potentials import CoulombPotential

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

SMEARING, LR_WAVELENGTH, CUTOFF = 1.0, 0.5, 4.5


def random_structure(n_atoms):
    cell = 5.0 * torch.eye(3) + 0.4 * torch.randn(3, 3)
    positions = torch.rand(n_atoms, 3) @ cell
    charges = torch.randn(n_atoms, 1)
    charges = charges - charges.mean()  # neutral
    indices, distances = compute_neighbors(positions, cell, CUTOFF)
    return cell, positions, charges, indices, distances


def pad(tensors, size, value=0):
    """Stack tensors along a new first axis, padding their first axis to ``size``."""
    out = []
    for tensor in tensors:
        padding = torch.full(
            (size - tensor.shape[0], *tensor.shape[1:]), value, dtype=tensor.dtype
        )
        out.append(torch.cat([tensor, padding]))
    return torch.stack(out)


def main():
    structures = [random_structure(n) for n in (3, 7, 5, 10, 8, 6)]
    cells, positions, charges, indices, distances = zip(*structures)
    n_max = max(p.shape[0] for p in positions)
    p_max = max(i.shape[0] for i in indices)

    batch = {
        "charges": pad(charges, n_max),
        "cell": torch.stack(cells),
        "positions": pad(positions, n_max),
        # padded pairs point at atom 0 with distance 0; pair_mask removes them
        "neighbor_indices": pad(indices, p_max),
        "neighbor_distances": pad(distances, p_max),
        "periodic": torch.ones(len(structures), 3, dtype=torch.bool),
        "node_mask": pad(
            [torch.ones(p.shape[0], dtype=torch.bool) for p in positions], n_max, False
        ),
        "pair_mask": pad(
            [torch.ones(i.shape[0], dtype=torch.bool) for i in indices], p_max, False
        ),
        "kvectors": compute_batched_kvectors(LR_WAVELENGTH, torch.stack(cells)),
    }
    calculator = EwaldCalculator(
        CoulombPotential(smearing=SMEARING), lr_wavelength=LR_WAVELENGTH
    )
    # vmap maps over positional arguments, in the order of forward's signature
    batched = torch.vmap(calculator.forward)(*batch.values())
    energies = (batch["charges"] * batched).sum(dim=(1, 2))

    worst = 0.0
    for b, (cell, pos, q, idx, dist) in enumerate(structures):
        single = calculator(q, cell, pos, idx, dist)
        energy = float((q * single).sum())
        worst = max(worst, float((batched[b, : pos.shape[0]] - single).abs().max()))
        print(
            f"structure {b}: {pos.shape[0]:2d} atoms, E = {energy:+.8f} "
            f"(batched {float(energies[b]):+.8f})"
        )
    print(f"largest difference batched vs one by one: {worst:.1e}")
    assert worst < 1e-10, worst


if __name__ == "__main__":
    main()
