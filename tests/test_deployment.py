"""Deployment: TorchScript (script, save, load) and torch.compile(fullgraph=True) of
every calculator give the eager values and gradients."""

import io

import pytest
import torch
from reference import requires_compile, to_torch, torch_neighbors
from torch.utils._python_dispatch import TorchDispatchMode

from torchpme import (
    Calculator,
    CalculatorDipole,
    CombinedPotential,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
    SplinePotential,
)
from torchpme.lib import generate_kvectors_for_ewald
from torchpme.neighbors import pair_distances

DTYPE = torch.float64


def system():
    cell = [[4.0, 0.2, 0.1], [0.5, 3.6, 0.3], [-0.4, 0.6, 4.4]]
    positions = [[0.1, 0.2, 0.3], [2.6, 2.4, 2.1], [1.2, 3.1, 0.7], [3.1, 0.8, 3.3]]
    charges = [[1.0, 0.5], [-1.0, 0.2], [0.7, -0.3], [-0.7, 0.1]]
    return to_torch(positions, charges, cell)


def spline_potential():
    r = torch.linspace(0.5, 8.0, 40, dtype=DTYPE)
    return SplinePotential(r_grid=r, y_grid=torch.erf(r) / r, smearing=1.0)


def combined_potential():
    parts = [
        CoulombPotential(smearing=1.0),
        InversePowerLawPotential(exponent=3, smearing=1.0),
    ]
    return CombinedPotential(
        parts, initial_weights=torch.tensor([1.0, 0.3], dtype=DTYPE), smearing=1.0
    )


CALCULATORS = {
    "direct": lambda: Calculator(CoulombPotential()),
    "ewald-coulomb": lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.8),
    "ewald-power": lambda: EwaldCalculator(
        InversePowerLawPotential(exponent=2, smearing=1.0), 0.8
    ),
    "ewald-combined": lambda: EwaldCalculator(combined_potential(), 0.8),
    "pme-spline": lambda: PMECalculator(spline_potential(), mesh_spacing=0.7),
    "pme-coulomb": lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.7),
    "p3m-power": lambda: P3MCalculator(
        InversePowerLawPotential(exponent=1, smearing=1.0), 0.7, 3
    ),
}


def evaluate(calculator, positions, charges, cell):
    positions = positions.clone().requires_grad_(True)
    cell = cell.clone().requires_grad_(True)
    indices, distances = torch_neighbors(positions, cell, 3.0)
    potentials = calculator(charges, cell, positions, indices, distances)
    energy = (charges * potentials).sum()
    grads = torch.autograd.grad(energy, (positions, cell))
    return potentials.detach(), grads


@pytest.mark.parametrize("name", list(CALCULATORS))
def test_torchscript_script_save_load(name):
    positions, charges, cell = system()
    calculator = CALCULATORS[name]()
    scripted = torch.jit.script(calculator)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    eager = evaluate(calculator, positions, charges, cell)
    for module in (scripted, loaded):
        result = evaluate(module, positions, charges, cell)
        torch.testing.assert_close(result[0], eager[0], atol=1e-13, rtol=1e-12)
        for a, b in zip(result[1], eager[1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-11)


def test_torchscript_dipole_calculator():
    positions, _, cell = system()
    dipoles = torch.tensor(
        [[0.1, 0.2, 0.3], [-0.2, 0.1, 0.0], [0.0, 0.3, -0.1], [0.2, -0.1, 0.1]],
        dtype=DTYPE,
    )
    calculator = CalculatorDipole(PotentialDipole(smearing=1.0), lr_wavelength=0.8)
    scripted = torch.jit.script(calculator)
    indices = torch.tensor([[0, 1], [2, 3]])
    vectors = positions[indices[:, 1]] - positions[indices[:, 0]]
    expected = calculator(dipoles, cell, positions, indices, vectors)
    result = scripted(dipoles, cell, positions, indices, vectors)
    torch.testing.assert_close(result, expected, atol=1e-13, rtol=1e-12)


@requires_compile
@pytest.mark.slow
@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_compile_fullgraph_forward_backward(method):
    """Fixed shapes (k-vectors given to Ewald, a fixed mesh for PME/P3M): the energy
    compiles as one graph, and its compiled backward gives the forces."""
    positions, charges, cell = system()
    potential = CoulombPotential(smearing=1.0)
    indices, _ = torch_neighbors(positions, cell, 3.0)
    if method == "ewald":
        calculator = EwaldCalculator(potential, lr_wavelength=0.8)
        kvectors = generate_kvectors_for_ewald(cell, torch.tensor([6, 6, 6]))
    else:
        build = PMECalculator if method == "pme" else P3MCalculator
        calculator = build(potential, 0.7, 4, fixed_mesh=[16, 16, 16])
        kvectors = None

    def energy(pos, distances):
        potentials = calculator(
            charges, cell, pos, indices, distances, kvectors=kvectors
        )
        return (charges * potentials).sum()

    def run(function):
        pos = positions.clone().requires_grad_(True)
        _, dist = torch_neighbors(pos, cell, 3.0)
        value = function(pos, dist)
        return value, -torch.autograd.grad(value, pos)[0]

    compiled = torch.compile(energy, fullgraph=True)
    eager = run(energy)
    result = run(compiled)
    torch.testing.assert_close(result[0], eager[0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(result[1], eager[1], atol=1e-11, rtol=1e-11)


FIXED_SHAPES = {
    "direct": lambda: Calculator(CoulombPotential()),
    "ewald": lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.8),
    "ewald-combined": lambda: EwaldCalculator(combined_potential(), 0.8),
    "pme": lambda: PMECalculator(
        CoulombPotential(smearing=1.0), 0.7, fixed_mesh=[8, 9, 10]
    ),
    "pme-spline": lambda: PMECalculator(spline_potential(), 0.7, fixed_mesh=[8, 8, 8]),
    "p3m-power": lambda: P3MCalculator(
        InversePowerLawPotential(exponent=1, smearing=1.0), 0.7, 3, fixed_mesh=[8, 8, 8]
    ),
}


def fixed_shape_step(name, device):
    """A step of a fixed-shape calculator on ``device`` (potentials and the
    energy's gradients to positions, charges and cell), and its inputs."""
    positions, charges, cell = system()
    indices, _ = torch_neighbors(positions, cell, 3.0)
    kvectors = generate_kvectors_for_ewald(cell, torch.tensor([4, 4, 4]))
    moved = [t.to(device) for t in (positions, charges, cell, indices, kvectors)]
    positions, charges, cell, indices, kvectors = moved
    calculator = FIXED_SHAPES[name]().to(device)
    shifts = torch.zeros((indices.shape[0], 3), dtype=DTYPE, device=device)
    extra = {"kvectors": kvectors} if name.startswith("ewald") else {}

    def step():
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
        distances = pair_distances(inputs[0], inputs[2], indices, shifts)
        potentials = calculator(
            inputs[1], inputs[2], inputs[0], indices, distances, **extra
        )
        energy = (inputs[1] * potentials).sum()
        return potentials, torch.autograd.grad(energy, inputs)

    return step, (positions, charges, cell)


@pytest.mark.parametrize("name", list(FIXED_SHAPES))
def test_step_reads_no_data_on_the_host(name):
    """With fixed shapes (k-vectors for Ewald, ``fixed_mesh`` for PME/P3M), energy
    and its gradients with respect to positions, charges and cell run on the meta
    device, whose tensors hold no data: any host read (``item``, ``tolist``,
    ``bool``, ``nonzero``, a copy to the CPU) raises there. So no step waits for an
    accelerator, the condition for capturing it in a CUDA graph."""
    step, inputs = fixed_shape_step(name, "meta")
    potentials, grads = step()
    assert potentials.shape == inputs[1].shape and potentials.device.type == "meta"
    assert [g.shape for g in grads] == [t.shape for t in inputs]


class _HostTraffic(TorchDispatchMode):
    """Records the operators that make a tensor from Python data (on an accelerator:
    a copy from the host) or read a value back through the dispatcher (``item``;
    ``tolist`` of a CPU tensor bypasses it: the meta-device test covers reads)."""

    FLAGGED = (
        torch.ops.aten.lift_fresh.default,
        torch.ops.aten.lift_fresh_copy.default,
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
    )

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.FLAGGED:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(FIXED_SHAPES))
def test_step_copies_nothing_from_the_host(name, monkeypatch):
    """The meta device lets ``torch.tensor(values, device=...)`` pass; on CUDA it is
    a synchronising copy that also breaks graph capture (seen on an H200). Here the
    step runs on the CPU along the accelerator's code paths (every eager-CPU-only
    shortcut also steps aside while ``torch.compile`` traces, so a trace is
    reported as in progress) and no operator may make a tensor from Python values
    or read one back."""
    step, _ = fixed_shape_step(name, "cpu")
    step()  # first call: caches may be filled
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with _HostTraffic() as traffic:
        step()
    assert traffic.seen == []


def fixed_mesh_batch_step(name, device):
    """``forward_batch`` of two systems (the test system and a stretched copy) on a
    fixed mesh, with the energy's gradients to positions, charges and cells."""
    positions, charges, cell = system()
    stretched = cell * 1.1
    indices, _ = torch_neighbors(positions, cell, 3.0)
    packed = [
        torch.cat([positions, positions @ torch.linalg.solve(cell, stretched)]),
        torch.cat([charges, charges]),
        torch.stack([cell, stretched]),
        torch.cat([indices, indices + len(positions)]),
        torch.repeat_interleave(torch.arange(2), len(positions)),
    ]
    positions, charges, cells, indices, owners = [t.to(device) for t in packed]
    calculator = FIXED_SHAPES[name]().to(device)
    shifts = torch.zeros((indices.shape[0], 3), dtype=DTYPE, device=device)

    def step():
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cells)]
        owner_cells = inputs[2].index_select(0, owners.index_select(0, indices[:, 0]))
        vectors = (
            inputs[0].index_select(0, indices[:, 1])
            - inputs[0].index_select(0, indices[:, 0])
            + torch.einsum("pi,pij->pj", shifts, owner_cells)
        )
        potentials = calculator.forward_batch(
            inputs[1], inputs[2], inputs[0], owners, indices, vectors.norm(dim=1)
        )
        energy = (inputs[1] * potentials).sum()
        return potentials, torch.autograd.grad(energy, inputs)

    return step, (positions, charges, cells)


MESH_CALCULATORS = [name for name in FIXED_SHAPES if name.startswith(("pme", "p3m"))]


@pytest.mark.parametrize("name", MESH_CALCULATORS)
def test_batch_on_a_fixed_mesh_reads_nothing_on_the_host(name, monkeypatch):
    """``forward_batch`` groups systems by mesh size, reading the cells; with a fixed
    mesh there is one group and nothing to read: the batched step runs on the meta
    device and, along the accelerator's code paths, makes no tensor from Python
    values (a batched step can then be captured in a CUDA graph)."""
    step, inputs = fixed_mesh_batch_step(name, "meta")
    potentials, grads = step()
    assert potentials.shape == inputs[1].shape
    assert [g.shape for g in grads] == [t.shape for t in inputs]
    step, _ = fixed_mesh_batch_step(name, "cpu")
    step()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with _HostTraffic() as traffic:
        step()
    assert traffic.seen == []


def _made_in_place(node) -> bool:
    """Whether an FX node is an in-place operation or writes into an ``out=``."""
    if node.op == "call_method":
        name = node.target
    elif node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        if "out" in node.kwargs:
            return True
    else:
        return False
    return name.endswith("_") and not name.startswith("_")


@requires_compile
@pytest.mark.parametrize("name", ["direct", "ewald", "pme"])
def test_compiled_functions_return_fresh_outputs(name):
    """No autograd Function of the library returns the result of an in-place
    operation (or an ``out=`` write) while ``torch.compile`` traces it: PyTorch 2.11
    then gives the Function's inputs no gradient (compiled PME forces came out wrong
    on the device that way, from the pair sum's final ``mul_``). Checked on the
    traced forward graphs, whose output is the same in every version; one
    calculator per family of Functions (pair sum, k-vector sum, mesh convolution:
    other potentials and P3M run the same ones)."""
    step, _ = fixed_shape_step(name, "cpu")
    traced = []

    def collect(graph_module, example_inputs):
        traced.append(graph_module)
        return graph_module.forward

    torch.compile(step, backend=collect)()
    bodies = [
        module
        for graph_module in traced
        for label, module in graph_module.named_modules()
        if label.startswith("fwd_body")
    ]
    assert bodies, "no autograd Function was traced"
    for body in bodies:
        (output,) = [node for node in body.graph.nodes if node.op == "output"]
        # the forward's output comes first in every version's layout:
        # ((outputs, [kept]), saved) since 2.11, (output, saved...) before
        returned = output.args[0]
        while isinstance(returned, (tuple, list)):
            returned = returned[0]
        assert not _made_in_place(returned), f"{body}: returns {returned.target}"
