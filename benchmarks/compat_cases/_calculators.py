"""Shared pieces of the calculator corpus (``calculators``, ``validation``,
``metatensor``): potentials as users build them, calculators, and evaluation of a
system to potentials, energies and energy gradients."""

import math

import numpy as np
import torch

from ._systems import neighbors, pair_vectors, random_ions, shifted_pairs

SMEARING = 0.8
CUTOFF = 3.0
#: float32 runs agree to float32 rounding, not to 1e-10
F32 = {"rtol": 1e-5, "atol": 1e-6}


# ---------------------------------------------------------------- systems, pairs
def spec_system(dtype=torch.float64):
    """The four-atom, two-channel system of the reference numbers (API §11)."""
    cell = [[5.0, 0, 0], [0.5, 4.5, 0], [0.3, 0.2, 4.0]]
    positions = [[0.1, 0.2, 0.3], [2.6, 2.4, 2.1], [1.2, 3.9, 0.7], [4.1, 0.8, 3.3]]
    charges = [[1.0, 0.5], [-1.0, 0.2], [0.7, -0.3], [-0.7, 0.1]]
    return tuple(torch.tensor(x, dtype=dtype) for x in (positions, charges, cell))


def vesin_pairs(positions, cell, cutoff: float, full: bool = False):
    """A vesin neighbour list as users convert it: ``(indices int64, distances)``."""
    from vesin import NeighborList

    i, j, d = NeighborList(cutoff=cutoff, full_list=full).compute(
        points=positions.detach().numpy(),
        box=cell.detach().numpy(),
        periodic=True,
        quantities="ijd",
    )
    indices = torch.from_numpy(np.stack([i, j], axis=1).astype(np.int64))
    return indices, torch.from_numpy(d).to(positions.dtype)


def ase_pairs(positions, cell, cutoff: float):
    """ASE's (full) ``neighbor_list``: ``(indices int64, distances)``."""
    import ase
    from ase.neighborlist import neighbor_list

    atoms = ase.Atoms(
        "H" * len(positions),
        positions=positions.detach().numpy(),
        cell=cell.detach().numpy(),
        pbc=True,
    )
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    indices = torch.from_numpy(np.stack([i, j], axis=1).astype(np.int64))
    return indices, torch.from_numpy(d).to(positions.dtype)


# ---------------------------------------------------------------- potentials
def coulomb(tp, smearing=SMEARING, **options):
    return tp.CoulombPotential(smearing=smearing, **options)


def power(exponent):
    def make(tp, smearing=SMEARING):
        return tp.InversePowerLawPotential(exponent=exponent, smearing=smearing)

    return make


def spline(tp, smearing=SMEARING):
    """The Coulomb long-range part on a reciprocal spline grid."""
    r_grid = torch.logspace(-1.5, 1.5, 60, dtype=torch.float64)
    y_grid = torch.erf(r_grid / (math.sqrt(2) * smearing)) / r_grid
    return tp.SplinePotential(
        r_grid=r_grid,
        y_grid=y_grid,
        reciprocal=True,
        smearing=smearing,
        y_at_zero=math.sqrt(2 / math.pi) / smearing,
    )


def combined(tp, smearing=SMEARING):
    return tp.CombinedPotential(
        [
            tp.CoulombPotential(smearing=smearing),
            tp.InversePowerLawPotential(exponent=2, smearing=smearing),
        ],
        initial_weights=torch.tensor([1.0, 0.5], dtype=torch.float64),
        smearing=smearing,
    )


def custom(tp, smearing=SMEARING):
    """Coulomb written out by a user as a ``Potential`` subclass."""

    class UserCoulomb(tp.Potential):
        def from_dist(self, dist, pair_mask=None):
            values = 1.0 / dist
            return values if pair_mask is None else values * pair_mask

        def lr_from_dist(self, dist, pair_mask=None):
            values = torch.erf(dist / (math.sqrt(2.0) * self.smearing)) / dist
            return values if pair_mask is None else values * pair_mask

        def lr_from_k_sq(self, k_sq):
            safe = torch.where(k_sq == 0, 1.0, k_sq)
            values = 4 * math.pi * torch.exp(-0.5 * self.smearing**2 * safe) / safe
            return torch.where(k_sq == 0, 0.0, values)

        def self_contribution(self):
            return math.sqrt(2.0 / math.pi) / self.smearing

        def background_correction(self):
            return math.pi * self.smearing**2

    return UserCoulomb(smearing=smearing)


POTENTIALS = {
    "coulomb": coulomb,
    "power4": power(4),
    "spline": spline,
    "combined": combined,
    "custom": custom,
}
METHODS = {
    "ewald": lambda tp, pot, **kw: tp.EwaldCalculator(pot, lr_wavelength=0.6, **kw),
    "pme": lambda tp, pot, **kw: tp.PMECalculator(pot, mesh_spacing=0.5, **kw),
    "p3m": lambda tp, pot, **kw: tp.P3MCalculator(pot, mesh_spacing=0.5, **kw),
}


# ---------------------------------------------------------------- evaluation
def ions_for(method, seed=0):
    """Random ions; in an orthorhombic cell for P3M, whose torch-pme influence
    function is exact only there (a skewed cell is compared in ``p3m_skewed_cell``)."""
    return random_ions(seed=seed, skew=method != "p3m")


def evaluate(
    calculator, system, want=("potential",), cutoff=CUTOFF, full=False, **forward
):
    """Run ``calculator`` on ``system`` and return the outputs named in ``want``."""
    positions, charges, cell = (t.clone().requires_grad_(True) for t in system)
    indices, shifts = shifted_pairs(positions, cell, cutoff, full)
    distances = torch.linalg.norm(pair_vectors(positions, cell, indices, shifts), dim=1)
    potential = calculator(charges, cell, positions, indices, distances, **forward)
    energy = (charges * potential).sum()
    out = {"potential": potential, "energy": energy}
    sources = {"forces": positions, "cell_grad": cell, "charge_grad": charges}
    grads = [name for name in want if name in sources]
    if grads:
        values = torch.autograd.grad(energy, [sources[name] for name in grads])
        for name, value in zip(grads, values):
            out[name] = -value if name == "forces" else value
    return {name: out[name] for name in want}


# ---------------------------------------------------------------- batching (§5.5)
def padded_batch(tp, wavelength):
    systems = [random_ions(6, seed=1), random_ions(9, seed=4)]
    n_atoms, lists = 9, [neighbors(s[0], s[2], CUTOFF) for s in systems]
    n_pairs = max(len(d) for _, d in lists)
    batch = {k: [] for k in ("q", "cell", "pos", "idx", "dist", "node", "pair")}
    for (pos, q, cell), (idx, dist) in zip(systems, lists):
        pad, pad_pairs = n_atoms - len(pos), n_pairs - len(dist)
        batch["q"].append(torch.cat([q, torch.zeros(pad, 1, dtype=q.dtype)]))
        batch["pos"].append(torch.cat([pos, torch.zeros(pad, 3, dtype=pos.dtype)]))
        batch["cell"].append(cell)
        batch["idx"].append(
            torch.cat([idx, torch.zeros(pad_pairs, 2, dtype=idx.dtype)])
        )
        batch["dist"].append(
            torch.cat([dist, torch.zeros(pad_pairs, dtype=dist.dtype)])
        )
        batch["node"].append(torch.arange(n_atoms) < len(pos))
        batch["pair"].append(torch.arange(n_pairs) < len(dist))
    batch = {k: torch.stack(v) for k, v in batch.items()}
    kvectors = tp.lib.compute_batched_kvectors(wavelength, batch["cell"])
    periodic = torch.ones(2, 3, dtype=torch.bool)
    return (
        batch["q"],
        batch["cell"],
        batch["pos"],
        batch["idx"],
        batch["dist"],
        periodic,
        batch["node"],
        batch["pair"],
        kvectors,
    )


# ---------------------------------------------------------------- dipoles (§5.6)
def dipoles(
    tp, potential, want=("potential",), full=False, dtype=torch.float64, **options
):
    positions, _, cell = random_ions(8, seed=5, dtype=dtype)
    dipoles = torch.tensor(np.random.default_rng(7).normal(size=(8, 3)), dtype=dtype)
    positions.requires_grad_(True)
    indices, shifts = shifted_pairs(positions, cell, CUTOFF, full)
    vectors = pair_vectors(positions, cell, indices, shifts)
    calculator = tp.CalculatorDipole(potential, full_neighbor_list=full, **options)
    potential = calculator(dipoles, cell, positions, indices, vectors)
    out = {"potential": potential}
    if "forces" in want:
        energy = (dipoles * potential).sum()
        out["forces"] = -torch.autograd.grad(energy, positions)[0]
    return out


def slab_system():
    """Random ions in an orthorhombic cell with vacuum along z."""
    positions, charges, cell = random_ions(8, seed=2, skew=False)
    cell[2, 2] = 16.0
    return positions, charges, cell


def ewald_kvectors(tp, cell, wavelength=0.6):
    """The k-vectors EwaldCalculator makes for ``cell`` (§5.2), built by a user."""
    ns = torch.ceil(torch.linalg.norm(cell, dim=1) / wavelength).to(torch.int64)
    return tp.lib.generate_kvectors_for_ewald(cell, ns)


def yukawa(tp):
    """A direct (smearing-free) user potential: only ``from_dist``."""

    class Yukawa(tp.Potential):
        def from_dist(self, dist, pair_mask=None):
            values = torch.exp(-dist / 1.5) / dist
            return values if pair_mask is None else values * pair_mask

    return Yukawa()


def direct_spline(tp):
    r_grid = torch.linspace(0.2, 6.0, 40, dtype=torch.float64)
    return tp.SplinePotential(r_grid=r_grid, y_grid=torch.exp(-r_grid), prefactor=2.0)


#: smearing-free potentials of the direct ``Calculator``: (make, full list)
DIRECT = {
    "coulomb_half": (lambda tp: tp.CoulombPotential(), False),
    "coulomb_full": (lambda tp: tp.CoulombPotential(), True),
    "coulomb_exclusion": (
        lambda tp: tp.CoulombPotential(exclusion_radius=2.2, exclusion_degree=2),
        False,
    ),
    "power3": (lambda tp: tp.InversePowerLawPotential(exponent=3), False),
    "spline": (direct_spline, False),
    "combined": (
        lambda tp: tp.CombinedPotential(
            [tp.CoulombPotential(), tp.InversePowerLawPotential(exponent=6)],
            initial_weights=torch.tensor([1.0, -2.0], dtype=torch.float64),
        ),
        False,
    ),
    "user_yukawa": (yukawa, True),
}

EWALD = {"lr_wavelength": 0.7}
#: dipole potentials and the options of ``dipoles``
DIPOLES = {
    "direct": (lambda tp: tp.PotentialDipole(), {}),
    "ewald": (lambda tp: tp.PotentialDipole(smearing=SMEARING), EWALD),
    "ewald_epsilon": (
        lambda tp: tp.PotentialDipole(smearing=SMEARING, epsilon=1.0),
        EWALD,
    ),
    "ewald_full": (
        lambda tp: tp.PotentialDipole(smearing=SMEARING),
        {**EWALD, "full": True},
    ),
    "exclusion": (
        lambda tp: tp.PotentialDipole(exclusion_radius=1.5, smearing=SMEARING),
        EWALD,
    ),
    "direct_prefactor": (
        lambda tp: tp.PotentialDipole(prefactor=tp.prefactors.eV_A),
        {"full": True},
    ),
}


def with_list(method, make, full, dtype=None):
    def call(tp):
        positions, charges, cell = random_ions()
        indices, distances = make(positions, cell)
        if dtype is not None:
            indices = indices.to(dtype)
        calculator = METHODS[method](tp, coulomb(tp), full_neighbor_list=full)
        return calculator(charges, cell, positions, indices, distances)

    return call


LISTS = {
    "helper_half": (False, lambda p, c: neighbors(p, c, CUTOFF)),
    "helper_full": (True, lambda p, c: neighbors(p, c, CUTOFF, full=True)),
    "vesin_half": (False, lambda p, c: vesin_pairs(p, c, CUTOFF)),
    "vesin_full": (True, lambda p, c: vesin_pairs(p, c, CUTOFF, full=True)),
    "ase_full": (True, lambda p, c: ase_pairs(p, c, CUTOFF)),
}


def default_weights(tp):
    """A combined potential with its default (float32) weights."""
    parts = [tp.CoulombPotential(smearing=SMEARING), power(3)(tp)]
    return tp.CombinedPotential(parts, smearing=SMEARING)
