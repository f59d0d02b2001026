"""Helpers of the wire and slab tests: neighbour pairs with images along the
periodic rows only, differentiable distances, one evaluation of energy, forces
and potentials (``test_slabs.py``, ``test_wires.py``), and the comparison of
two such results (``test_reference_slab.py``, ``test_reference_wire.py``)."""

import numpy as np
import torch
from reference import neighbor_list

CUTOFF = 7.0  # erfc(7 / (√2 · 0.8)) / 7 ≈ 1e-16 at the tests' smearing 0.8


def pairs(positions, cell, periodic, cutoff=CUTOFF):
    """Pairs with images along the periodic rows only, and their image vectors:
    the open rows are replaced by long orthonormal directions orthogonal to the
    periodic ones (the null space of those rows), so the brute-force list of
    ``reference.py`` finds no images along them."""
    rows = cell[[d for d in range(3) if periodic[d]]]
    directions = np.linalg.svd(rows)[2][len(rows) :]
    wide = cell.copy()
    for axis, direction in zip([d for d in range(3) if not periodic[d]], directions):
        wide[axis] = 1000.0 * direction
    found, shifts = neighbor_list(positions, wide, cutoff, periodic=periodic)
    return torch.tensor(found), torch.tensor(shifts @ wide)


def inputs(positions, charges, cell, periodic):
    """``(q, cell, r, pairs, distances, periodic)`` as tensors, ``q`` and ``r``
    requiring gradients, the distances differentiable in ``r``."""
    r = torch.tensor(positions, requires_grad=True)
    q = torch.tensor(charges, requires_grad=True)
    found, images = pairs(positions, cell, periodic)
    distances = torch.linalg.norm(r[found[:, 1]] - r[found[:, 0]] + images, dim=1)
    return q, torch.tensor(cell), r, found, distances, torch.tensor(periodic)


def evaluate(calculator, system):
    """``(E, forces, potentials)``, the potentials as ``∂E/∂q_i = φ_i``."""
    q, cell, r, found, distances, periodic = inputs(*system)
    energy = calculator.energy(q, cell, r, found, distances, periodic=periodic)
    forces, potentials = torch.autograd.grad(energy, (r, q))
    return float(energy.detach()), -forces.numpy(), potentials.numpy()[:, 0]


def assert_within(result, expected, charges, tolerance):
    """``(E, forces, potentials)`` within ``tolerance`` of the reference, on the
    scale ``Σ|q_i| max|φ|``."""
    scale = float(np.abs(charges).sum() * np.abs(expected[2]).max())
    assert abs(result[0] - expected[0]) < tolerance * scale
    np.testing.assert_allclose(result[2], expected[2], atol=tolerance * scale)
    np.testing.assert_allclose(result[1], expected[1], atol=tolerance * scale)


def close(x, y, rtol):
    """Equal to ``rtol`` relative to the largest entry of ``y``."""
    x, y = np.asarray(x), np.asarray(y)
    scale = max(np.abs(y).max(), 1e-300)
    return np.abs(x - y).max() <= rtol * scale


def assert_same(res, ref, rtol, q):
    """Two ``(energy, potentials, forces)`` results agree to ``rtol``."""
    (e, phi, f), (e0, phi0, f0) = res, ref
    # the energy can be a small difference of large terms: measured against
    # 1/2 sum_i |q_i phi_i| when that is larger
    scale = max(abs(e0), 0.5 * np.abs(q * phi0).sum())
    assert abs(e - e0) <= rtol * scale, (e, e0)
    assert close(phi, phi0, rtol), np.abs(phi - phi0).max()
    assert close(f, f0, rtol), np.abs(f - f0).max()


def cell_energy(calculator, system):
    """``(energy, arguments)``: the energy as a function of charges, cell and
    positions (pair vectors follow the cell), and those three tensors
    requiring gradients, for gradcheck and gradgradcheck."""
    positions, charges, cell, periodic = system
    found, images = pairs(positions, cell, periodic)
    fractional = torch.tensor(
        np.asarray(images) @ np.linalg.pinv(cell), dtype=torch.float64
    )
    flags = torch.tensor(periodic)

    def energy(q, c, r):
        distances = torch.linalg.norm(
            r[found[:, 1]] - r[found[:, 0]] + fractional @ c, dim=1
        )
        return calculator.energy(q, c, r, found, distances, periodic=flags)

    arguments = (
        torch.tensor(charges, requires_grad=True),
        torch.tensor(cell, requires_grad=True),
        torch.tensor(positions, requires_grad=True),
    )
    return energy, arguments


def scripted_and_eager(calculator, system):
    """``(TorchScript result, eager result)`` of the potentials of ``system``."""
    q, cell, r, found, distances, periodic = inputs(*system)
    arguments = (q.detach(), cell, r.detach(), found, distances.detach())
    return (
        torch.jit.script(calculator)(*arguments, periodic=periodic),
        calculator(*arguments, periodic=periodic),
    )


def float32_and_float64(calculator, system):
    """``(float32 result, float64 result)`` of the potentials of ``system``;
    ``calculator`` is moved to float32 on the way."""
    q, cell, r, found, distances, periodic = inputs(*system)
    arguments = (q.detach(), cell, r.detach(), found, distances.detach())
    expected = calculator(*arguments, periodic=periodic)
    single = [a.float() if a.is_floating_point() else a for a in arguments]
    return calculator.to(torch.float32)(*single, periodic=periodic), expected
