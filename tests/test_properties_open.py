"""Property-based tests (hypothesis) of clusters, wires and slabs on the mesh.

Random systems (2–6 ions, one or two channels, neutral or charged, as in
``test_properties.py``) in random rotated triclinic cells,
of which one, two or three rows are open (a slab, a wire, a cluster; slabs with
``slab_method="exact"``), are checked for PME and P3M against their own
symmetries: permutations and shifts by periodic lattice vectors are exact (to
rounding); translations move the atoms relative to the mesh, and rotations turn
a cluster's Cartesian mesh and a wire's transverse axes, so those hold to the
discretisation error (a slab's mesh turns with it: exact).
"""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import neighbor_list
from test_properties import (
    CUTOFF,
    MESH_ERROR,
    MESH_SPACING,
    SMEARING,
    distances,
    exact_tolerance,
    systems,
)

from torchpme import CoulombPotential, P3MCalculator, PMECalculator, testing

KINDS = {"cluster": 0, "wire": 1, "slab": 2}


@st.composite
def open_systems(draw):
    """(charges (N, C), cell, positions, periodic): a system of
    :func:`test_properties.systems` with one, two or three rows made open."""
    charges, cell, positions = draw(systems())
    kind = draw(st.sampled_from(list(KINDS)))
    axis = draw(st.integers(0, 2))
    if kind == "cluster":
        periodic = [False] * 3
    elif kind == "wire":
        periodic = [d == axis for d in range(3)]
    else:
        periodic = [d != axis for d in range(3)]
    return charges, cell, positions, periodic


def open_function(method, periodic):
    """``fn(charges, cell, positions)`` with a fresh neighbour list that has
    images along the periodic rows only."""
    potential = CoulombPotential(smearing=SMEARING)
    build = PMECalculator if method == "pme" else P3MCalculator
    nodes = 6 if method == "pme" else 5
    calculator = build(
        potential, MESH_SPACING, interpolation_nodes=nodes, slab_method="exact"
    )
    mask = np.array(periodic, dtype=float)

    def fn(charges, cell, positions):
        pos = positions.detach().to(torch.float64).numpy()
        box = cell.detach().to(torch.float64).numpy()
        image = np.floor(pos @ np.linalg.inv(box)) * mask
        pairs, shifts = neighbor_list(pos - image @ box, box, CUTOFF, periodic=periodic)
        shifts = shifts - image[pairs[:, 1]] + image[pairs[:, 0]]
        pairs, shifts = torch.from_numpy(pairs), torch.from_numpy(shifts)
        flags = torch.tensor(periodic)
        return calculator(
            charges, cell, positions, pairs,
            distances(positions, cell, pairs, shifts), periodic=flags,
        )  # fmt: skip

    return fn


def _mesh_tolerance(fn, system, method):
    scale = float(fn(*system).abs().max())
    return {"atol": MESH_ERROR[method] * max(scale, 1.0), "rtol": 0.0}


def _torch(system):
    charges, cell, positions, periodic = system
    return [torch.tensor(a) for a in (charges, cell, positions)], periodic


@given(
    system=open_systems(),
    method=st.sampled_from(["pme", "p3m"]),
    translation=st.lists(st.floats(-10, 10), min_size=3, max_size=3),
)
def test_translation_invariance(system, method, translation):
    (charges, cell, positions), periodic = _torch(system)
    fn = open_function(method, periodic)
    testing.check_translation_invariance(
        fn, charges, cell, positions, torch.tensor(translation),
        **_mesh_tolerance(fn, (charges, cell, positions), method),
    )  # fmt: skip


@given(system=open_systems(), method=st.sampled_from(["pme", "p3m"]), data=st.data())
def test_permutation_and_lattice_shifts_are_exact(system, method, data):
    (charges, cell, positions), periodic = _torch(system)
    fn = open_function(method, periodic)
    tol = exact_tolerance(torch.float64, charges)
    order = data.draw(st.permutations(list(range(len(positions)))))
    testing.check_permutation_equivariance(
        fn, charges, cell, positions, torch.tensor(order), **tol
    )
    if any(periodic):
        steps = data.draw(
            st.lists(
                st.lists(st.integers(-3, 3), min_size=3, max_size=3),
                min_size=len(positions),
                max_size=len(positions),
            )
        )
        shifts = torch.tensor(steps) * torch.tensor(periodic)
        testing.check_lattice_shift_invariance(
            fn, charges, cell, positions, shifts, **tol
        )


@given(
    system=open_systems(),
    method=st.sampled_from(["pme", "p3m"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_rotation_invariance_and_force_equivariance(system, method, seed):
    (charges, cell, positions), periodic = _torch(system)
    fn = open_function(method, periodic)
    rotation = testing.random_rotation(
        torch.float64, torch.Generator().manual_seed(seed)
    )
    if sum(periodic) == 2:
        tol = exact_tolerance(torch.float64, charges)
    else:
        tol = _mesh_tolerance(fn, (charges, cell, positions), method)
    testing.check_rotation_invariance(
        fn, charges, cell, positions, rotation, check_forces=sum(periodic) == 2,
        **tol,
    )  # fmt: skip
