"""Structures and charges for the front ends: the embedded rock salt, charge parsing.

Every error here is a ``ValueError`` with the house one-line message (argument,
expected, received), which the CLI prints without a traceback.
"""

import math
from typing import Dict, Optional, Sequence

import numpy as np

from .._core.validation import message

__all__ = [
    "MADELUNG_ROCKSALT",
    "charges_for",
    "charges_from_atoms",
    "check_neutral",
    "parse_charges",
    "rocksalt",
]

# Madelung constant of rock salt referred to the nearest-neighbour distance r0
# (energy per ion pair −M q²/r0): Johnson & Templeton, J. Chem. Phys. 34, 2004
# (1961); Sherman, Chem. Rev. 11, 93 (1932)
MADELUNG_ROCKSALT = 1.747564594633

# lattice constant of NaCl (Å), conventional cubic cell
NACL_LATTICE = 5.64


def rocksalt(
    repeat: int = 2,
    lattice: float = NACL_LATTICE,
    displacement: float = 0.0,
    seed: int = 0,
):
    """A rock-salt (NaCl) supercell of ``repeat³`` conventional cells (8 ions each).

    Args:
        repeat: conventional cells per axis.
        lattice: cubic lattice constant ``a`` (Å); nearest neighbours at ``a/2``.
        displacement: standard deviation (Å) of random Gaussian displacements.
        seed: seed of the displacements.

    Returns:
        an ``ase.Atoms`` with ``initial_charges`` +1 (Na) and −1 (Cl), periodic.
    """
    import ase

    base = np.array(
        [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
    )
    cells = np.array(
        [
            [i, j, k]
            for i in range(repeat)
            for j in range(repeat)
            for k in range(repeat)
        ],
        dtype=float,
    )
    half = lattice / 2.0
    positions = (cells[:, None, :] * 2.0 + base[None, :, :]).reshape(-1, 3) * half
    parity = positions.round(6) / half
    sign = np.where(np.round(parity.sum(axis=1)).astype(int) % 2 == 0, 1.0, -1.0)
    symbols = ["Na" if s > 0 else "Cl" for s in sign]
    if displacement > 0.0:
        rng = np.random.default_rng(seed)
        positions = positions + rng.normal(scale=displacement, size=positions.shape)
    atoms = ase.Atoms(
        symbols=symbols,
        positions=positions,
        cell=np.eye(3) * lattice * repeat,
        pbc=True,
    )
    atoms.set_initial_charges(sign)
    return atoms


def parse_charges(text: str) -> Dict[str, float]:
    """Parse ``"Na=1,Cl=-1"`` into ``{"Na": 1.0, "Cl": -1.0}``."""
    result: Dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        symbol, sep, value = item.partition("=")
        symbol = symbol.strip()
        try:
            if not sep or not symbol:
                raise ValueError
            charge = float(value)
        except ValueError:
            raise ValueError(
                message("--charges", "of the form 'Na=1,Cl=-1'", f"'{text}'")
            ) from None
        if not math.isfinite(charge):
            raise ValueError(message("--charges", "finite numbers", f"'{item}'"))
        result[symbol] = charge
    if not result:
        raise ValueError(message("--charges", "of the form 'Na=1,Cl=-1'", f"'{text}'"))
    return result


def charges_for(
    symbols: Sequence[str],
    table: Dict[str, float],
    argument: str = "--charges",
    strict: bool = False,
) -> np.ndarray:
    """Per-atom charges from a ``{symbol: charge}`` table.

    Every element of ``symbols`` needs an entry. An entry for an element the
    structure does not have is refused when ``strict`` (the CLI, where it is a
    typo or the wrong file); otherwise it is allowed (one table for several
    structures) as long as it names a chemical element.
    """
    missing = sorted({s for s in symbols if s not in table})
    given = ",".join(f"{k}={v:g}" for k, v in table.items())
    if missing:
        raise ValueError(
            message(
                argument,
                f"a charge for every element (missing: {', '.join(missing)})",
                f"'{given}'",
            )
        )
    present = sorted(set(symbols))
    if strict:
        unknown = [k for k in table if k not in present]
        what = f"charges only for the elements of the structure ({', '.join(present)})"
    else:
        from ase.data import chemical_symbols

        unknown = [k for k in table if k not in chemical_symbols]
        what = "chemical symbols as keys"
    if unknown:
        raise ValueError(
            message(argument, what, f"'{given}' (unknown: {', '.join(unknown)})")
        )
    return np.array([table[s] for s in symbols], dtype=float)


def charges_from_atoms(atoms) -> Optional[np.ndarray]:
    """Charges stored with a structure, or ``None``.

    Looked up, in order: a per-atom ``charges`` array (extxyz column), non-zero
    ``initial_charges``, and ``charges`` results of an attached calculator (as ASE
    reads extxyz files written with results).
    """
    if "charges" in atoms.arrays:
        return np.asarray(atoms.arrays["charges"], dtype=float).reshape(-1)
    if "initial_charges" in atoms.arrays:
        charges = np.asarray(atoms.arrays["initial_charges"], dtype=float)
        if np.any(charges != 0.0):
            return charges.reshape(-1)
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if "charges" in results:
        return np.asarray(results["charges"], dtype=float).reshape(-1)
    return None


def check_neutral(charges: np.ndarray, allow_charged: bool, hint: str) -> None:
    """Refuse a net charge unless allowed (periodic sums then need a background)."""
    total = float(np.sum(charges))
    scale = max(1.0, float(np.sum(np.abs(charges))))
    if abs(total) > 1e-6 * scale and not allow_charged:
        raise ValueError(
            message(
                "charges",
                f"neutral (total 0; {hint} to accept a net charge)",
                f"total charge {total:.6g}",
            )
        )
