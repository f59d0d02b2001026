"""Molecular dynamics driven by i-PI, with torchpme computing the forces.

`i-PI <https://ipi-code.org>`_ integrates the equations of motion in a server
process and asks a client for the energy, forces and virial of each new
configuration through a socket. ASE's :class:`ase.calculators.socketio.SocketClient`
turns any ASE calculator into such a client, here
:class:`torchpme.ase.TorchPMECalculator` (the Coulomb energy of fixed charges)
summed with a small Born–Mayer repulsion ``A exp(-r/ρ)`` written below, so that
the ions of a rock-salt crystal do not collapse onto each other.

The script writes an i-PI input (NVE, 20 steps of 1 fs from a 64-ion NaCl
crystal, slightly disordered, with thermal velocities at 300 K) in a temporary
folder, starts the ``i-pi`` server as a subprocess, connects the client through a
UNIX socket with a unique name and serves forces until the server has done its
steps and tells the client to stop. A server or client that fails is stopped
after a timeout, never left hanging. It then reads i-PI's properties file and
checks that the conserved quantity (kinetic plus potential energy) stays constant,
to within the error of the integrator, and that i-PI's potential energy at step 0
is the calculator's energy of the same structure (i-PI works in atomic units and
converts its outputs to the units named in the input, here eV; its hartree and
ASE's differ by 1e-7).

Two details of i-PI's inputs: an ``.xyz`` file is read in atomic units (bohr)
unless its comment line says ``positions{angstrom} cell{angstrom}``, and the cell
is read from that line in i-PI's own format ``CELL(abcABC): a b c α β γ`` (the
``Lattice="..."`` of ASE's extended XYZ is silently ignored there: the cell would
be a unit box).

Other i-PI clients work the same way: LAMMPS (``fix ipi``), CP2K, Quantum
ESPRESSO or i-PI's own drivers connect to the same socket; only the client
changes. It needs ``pip install ipi`` and ASE (with vesin); without them the
script says so and exits.

Run: ``python examples/09_ipi_driver.py``
"""

# ruff: noqa: E402 (the imports come after the check that i-PI and ASE are there)

import importlib.util
import sys

MISSING = [
    name for name in ("ase", "vesin", "ipi") if importlib.util.find_spec(name) is None
]
if MISSING and __name__ == "__main__":
    print(
        f"this example needs {', '.join(MISSING)} (pip install ipi ase vesin): skipped"
    )
    sys.exit(0)

import os
import pathlib
import shutil
import subprocess
import sysconfig
import tempfile
import time
import uuid

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.mixing import SumCalculator
from ase.calculators.socketio import SocketClient, actualunixsocketname
from ipi.utils.units import unit_to_user
from vesin import NeighborList

from torchpme.ase import TorchPMECalculator

STEPS = 20
TIMEOUT = 120.0  # seconds: the server is killed if it has not finished by then
# the conserved quantity may vary by at most this much over the run (eV per ion)
DRIFT_TOLERANCE = 1e-5


class BornMayer(Calculator):
    """Pair repulsion ``A (exp(-r/ρ) - exp(-r_c/ρ))`` between all ions, r < r_c.

    With ``A = 1220`` eV and ``ρ = 0.317`` Å the repulsion of the six nearest
    neighbours balances the Madelung attraction of NaCl at its lattice constant,
    5.64 Å (the like ions, 4 Å apart, add a little more). The shift makes the
    energy continuous at the cutoff, as NVE needs; the force still jumps there,
    by 2e-5 eV/Å.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(self, prefactor=1220.0, decay=0.317, cutoff=6.0):
        super().__init__()
        self.prefactor, self.decay, self.cutoff = prefactor, decay, cutoff

    def calculate(self, atoms=None, properties=("energy",), changes=all_changes):
        super().calculate(atoms, properties, changes)
        # each pair once, vector from i to the periodic image of j
        i, j, distance, vector = NeighborList(
            cutoff=self.cutoff, full_list=False
        ).compute(self.atoms.positions, self.atoms.cell[:], True, quantities="ijdD")
        exponential = self.prefactor * np.exp(-distance / self.decay)
        shift = self.prefactor * np.exp(-self.cutoff / self.decay)
        energy = np.sum(exponential - shift)
        # the force of each pair on j (-dE/dr along the unit vector); -that on i
        pair_forces = (exponential / (self.decay * distance))[:, None] * vector
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, -pair_forces)
        np.add.at(forces, j, pair_forces)
        virial = vector.T @ pair_forces  # Σ r_ij ⊗ f_ij over pairs
        stress = -virial / self.atoms.get_volume()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "stress": stress.flat[[0, 4, 8, 5, 2, 1]],
        }


def make_crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def calculator():
    coulomb = TorchPMECalculator(charges={"Na": 1.0, "Cl": -1.0})
    return SumCalculator([coulomb, BornMayer()])


def write_xyz(atoms, path):
    """The structure in i-PI's XYZ format: cell and units on the comment line."""
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    lines = [
        f"{len(atoms)}",
        f"# CELL(abcABC): {a:.10f} {b:.10f} {c:.10f} {alpha:.6f} {beta:.6f} "
        f"{gamma:.6f} cell{{angstrom}} positions{{angstrom}}",
    ]
    for symbol, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions):
        lines.append(f"{symbol} {x:.12f} {y:.12f} {z:.12f}")
    path.write_text("\n".join(lines) + "\n")


INPUT = """\
<simulation verbosity='low' safe_stride='{steps}'>
  <output prefix='md'>
    <properties stride='1' filename='out'>
      [ step, time{{femtosecond}}, conserved{{electronvolt}},
        potential{{electronvolt}}, kinetic_md{{electronvolt}},
        temperature{{kelvin}} ]
    </properties>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>12345</seed></prng>
  <ffsocket name='torchpme' mode='unix'>
    <address>{address}</address>
    <latency>1e-4</latency>
  </ffsocket>
  <system>
    <initialize nbeads='1'>
      <file mode='xyz'>init.xyz</file>
      <velocities mode='thermal' units='kelvin'>300</velocities>
    </initialize>
    <forces><force forcefield='torchpme'/></forces>
    <motion mode='dynamics'>
      <dynamics mode='nve'>
        <timestep units='femtosecond'>1.0</timestep>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def ipi_command():
    """How to start the i-PI server: its ``i-pi`` script, with this Python."""
    script = pathlib.Path(sysconfig.get_path("scripts")) / "i-pi"
    if not script.exists():
        found = shutil.which("i-pi")
        if found is None:
            return None
        script = pathlib.Path(found)
    return [sys.executable, str(script)]


def connect(address, server, deadline):
    """The client, once the server has opened its socket (or an error)."""
    path = actualunixsocketname(address)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"i-PI stopped before it opened {path}")
        if os.path.exists(path):
            try:
                # the timeout bounds each wait for the server's next request
                return SocketClient(unixsocket=address, timeout=30.0)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # the file exists, the server is not listening yet
        time.sleep(0.05)
    raise TimeoutError(f"i-PI did not open {path} within {TIMEOUT} s")


def run_ipi(atoms, calc, folder):
    """Run i-PI from ``atoms`` in ``folder``, ``calc`` serving the forces.

    Returns the rows of i-PI's properties file.
    """
    command = ipi_command()
    if command is None:
        raise RuntimeError("the i-pi script of the ipi package was not found")
    folder = pathlib.Path(folder)
    # unique per run: concurrent runs must not share (or remove) a socket
    address = f"torchpme_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    write_xyz(atoms, folder / "init.xyz")
    (folder / "input.xml").write_text(INPUT.format(steps=STEPS, address=address))
    log = (folder / "ipi.log").open("w")
    deadline = time.monotonic() + TIMEOUT
    server = subprocess.Popen(
        [*command, "input.xml"], cwd=folder, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        client = connect(address, server, deadline)
        client_atoms = atoms.copy()
        client_atoms.calc = calc
        # serves forces (and the virial, from the stress) until i-PI says EXIT
        client.run(client_atoms, use_stress=True)
        server.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except Exception:  # show what i-PI said, then fail
        log.flush()
        print((folder / "ipi.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
        if os.path.exists(actualunixsocketname(address)):
            os.unlink(actualunixsocketname(address))
    if server.returncode != 0:
        raise RuntimeError(
            f"i-PI exited with {server.returncode}:\n"
            + (folder / "ipi.log").read_text()[-3000:]
        )
    return np.loadtxt(folder / "md.out", ndmin=2)


def main():
    atoms = make_crystal()
    calc = calculator()
    # the same calculator serves i-PI below: tuned here, once
    energy = calc.get_potential_energy(atoms)
    print(f"{len(atoms)} ions, ASE energy of the initial structure {energy:.6f} eV")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        table = run_ipi(atoms, calc, folder)
    elapsed = time.perf_counter() - start
    step, _, conserved, potential, _, temperature = table.T
    print(f"i-PI: {len(step) - 1} NVE steps of 1 fs in {elapsed:.1f} s")
    print(" step  time/fs  conserved/eV   potential/eV  kinetic/eV   T/K")
    for row in table[:: max(1, len(table) // 5)]:
        print("{:5.0f} {:8.1f} {:13.6f} {:14.6f} {:11.6f} {:6.1f}".format(*row))

    drift = conserved.max() - conserved.min()
    print(
        f"conserved quantity varies by {drift:.2e} eV "
        f"({drift / len(atoms):.1e} eV per ion, tolerance {DRIFT_TOLERANCE:.0e}: "
        "velocity Verlet's error at 1 fs, about 8 times smaller at 0.5 fs)"
    )
    # i-PI's hartree is 27.211383 eV, ASE's 27.211386 (1e-7 relative): the client
    # sends hartree by ASE's value, i-PI writes eV by its own
    expected = energy / units.Ha * unit_to_user("energy", "electronvolt", 1.0)
    print(
        f"potential energy at step 0: i-PI {potential[0]:.6f} eV, ASE "
        f"{energy:.6f} eV (difference {potential[0] - energy:.1e} eV), the ASE "
        f"energy in i-PI's eV {expected:.6f} (difference "
        f"{potential[0] - expected:.1e} eV)"
    )
    assert len(step) == STEPS + 1 and step[-1] == STEPS, step
    assert drift / len(atoms) < DRIFT_TOLERANCE, drift
    assert abs(potential[0] - energy) < 2e-7 * abs(energy), (potential[0], energy)
    # i-PI writes 9 significant digits
    assert abs(potential[0] - expected) < 2e-6, (potential[0], expected)
    assert temperature.min() > 0.0


if __name__ == "__main__":
    main()
