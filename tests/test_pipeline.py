"""Every chain of the one mesh pipeline (``torchpme._core.pipeline.run``).

The stages spread, filter and gather, alone and chained, are checked with free
inputs (random stencils that collide on the mesh, random weights that need not
sum to one, values and an even kernel with a parameter): values against an
explicit NumPy sum over the stencils and ``numpy.fft``, adjointness of each chain
with the reversed chain, first derivatives by ``gradcheck`` and second ones by
``gradgradcheck`` (finite differences, nothing from the code under test).
"""

import itertools
from typing import List

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torchpme._core import defaults, pipeline

NS = [4, 5, 6]
SIZE = NS[0] * NS[1] * NS[2]
N_ATOMS, N_NODES, N_CHANNELS = 5, 3, 2
STAGES = ["spread", "filter", "gather"]
CHAINS = [
    list(chain)
    for length in (1, 2, 3)
    for chain in itertools.combinations(STAGES, length)
]
ADJOINT = {"spread": "gather", "filter": "filter", "gather": "spread"}


def _inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    nodes = torch.stack(
        [torch.randint(0, n, (N_ATOMS, N_NODES), generator=generator) for n in NS], 1
    )
    # one atom on another's nodes, so that the additions collide
    nodes[1] = nodes[0]
    nodes[:, 0] *= NS[1] * NS[2]
    nodes[:, 1] *= NS[2]
    weights = torch.rand(N_ATOMS, 3, N_NODES, generator=generator).double()
    width = torch.tensor([0.7, 1.3], dtype=torch.float64)
    return nodes, weights.requires_grad_(True), width.requires_grad_(True)


def _k_squared():
    """``|k|²`` of an orthorhombic cell on the half spectrum: even in ``k``."""
    axes = [np.fft.fftfreq(n) * n for n in NS[:2]] + [np.fft.rfftfreq(NS[2]) * NS[2]]
    grid = np.meshgrid(*axes, indexing="ij")
    return torch.tensor(sum((0.9 + 0.2 * d) * g**2 for d, g in enumerate(grid)))


def _kernel(width):
    return torch.exp(-width[:, None, None, None] * _k_squared()) + 0.5


def _input_of(chain, seed):
    generator = torch.Generator().manual_seed(seed)
    if chain[0] == "spread":
        return torch.randn(N_ATOMS, N_CHANNELS, generator=generator).double()
    return torch.randn(N_CHANNELS, SIZE, generator=generator).double()


def _run(chain, nodes):
    def function(weights, width, x):
        return pipeline.run(chain, nodes, weights, _kernel(width), x, NS)

    return function


def _dense_weights(nodes, weights):
    """``(N, size)`` dense weights ``W_it`` by explicit loops over the stencils."""
    dense = np.zeros((N_ATOMS, SIZE))
    w = weights.detach().numpy()
    shares = nodes.numpy()
    for i in range(N_ATOMS):
        for a, b, c in itertools.product(range(N_NODES), repeat=3):
            node = shares[i, 0, a] + shares[i, 1, b] + shares[i, 2, c]
            dense[i, node] += w[i, 0, a] * w[i, 1, b] * w[i, 2, c]
    return dense


def _reference(chain, nodes, weights, width, x):
    dense = _dense_weights(nodes, weights)
    kernel = _kernel(width).detach().numpy()
    value = x.detach().numpy()
    if "spread" in chain:
        value = value.T @ dense  # (C, size)
    if "filter" in chain:
        meshes = value.reshape([N_CHANNELS] + NS)
        spectrum = np.fft.rfftn(meshes, axes=(1, 2, 3)) * kernel
        value = np.fft.irfftn(spectrum, s=NS, axes=(1, 2, 3), norm="forward")
        value = value.reshape(N_CHANNELS, SIZE)
    if "gather" in chain:
        value = dense @ value.T  # (N, C)
    return value


@pytest.fixture(params=["whole", "chunked"])
def chunks(request, monkeypatch):
    """Atoms in one chunk, or in chunks of 60 stencil entries (two atoms of 27)."""
    if request.param == "chunked":
        monkeypatch.setattr(defaults, "STENCIL_ENTRIES", 60)


@pytest.mark.parametrize("chain", CHAINS, ids="-".join)
def test_values_match_explicit_sums(chain, chunks):
    nodes, weights, width = _inputs()
    x = _input_of(chain, 1)
    result = _run(chain, nodes)(weights, width, x)
    expected = _reference(chain, nodes, weights, width, x)
    np.testing.assert_allclose(
        result.detach().numpy(), expected, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("chain", CHAINS, ids="-".join)
def test_adjoint_is_the_reversed_chain(chain):
    nodes, weights, width = _inputs()
    adjoint = [ADJOINT[stage] for stage in reversed(chain)]
    x, y = _input_of(chain, 1), _input_of(adjoint, 2)
    forward = _run(chain, nodes)(weights, width, x)
    backward = _run(adjoint, nodes)(weights, width, y)
    torch.testing.assert_close(
        torch.sum(forward * y), torch.sum(x * backward), rtol=1e-12, atol=1e-12
    )


def _fast(chain) -> bool:
    """Chains with a filter check random projections of their Jacobians
    (``fast_mode``): a full Jacobian of a mesh to mesh map takes one transform per
    mesh point, and the explicit-sum test above already pins every entry."""
    return "filter" in chain


@pytest.mark.parametrize("chain", CHAINS, ids="-".join)
def test_gradients(chain, chunks):
    nodes, weights, width = _inputs()
    x = _input_of(chain, 1).requires_grad_(True)
    assert gradcheck(_run(chain, nodes), (weights, width, x), fast_mode=_fast(chain))


@pytest.mark.parametrize("chain", CHAINS, ids="-".join)
def test_second_derivatives(chain):
    nodes, weights, width = _inputs()
    x = _input_of(chain, 1).requires_grad_(True)
    function = _run(chain, nodes)
    assert gradgradcheck(function, (weights, width, x), fast_mode=_fast(chain))


@pytest.mark.parametrize("chain", [["filter"], ["spread", "filter", "gather"]])
def test_partial_gradients(chain):
    """Gradients asked for one input at a time equal those of all at once (the
    backward skips the stages that no requested gradient needs)."""
    nodes, weights, width = _inputs()
    x = _input_of(chain, 1).requires_grad_(True)
    upstream = torch.randn(_run(chain, nodes)(weights, width, x).shape).double()
    arguments = (weights, width, x)
    # a filter has no weights
    wanted = arguments[1:] if chain == ["filter"] else arguments
    function = _run(chain, nodes)
    together = torch.autograd.grad(function(*arguments), wanted, upstream)
    for one, expected in zip(wanted, together):
        (alone,) = torch.autograd.grad(function(*arguments), one, upstream)
        torch.testing.assert_close(alone, expected, rtol=1e-13, atol=1e-13)


def test_scripted_chains_equal_eager():
    nodes, weights, width = _inputs()

    def composed(nodes, weights, kernel, x, shape: List[int]):
        stages = ["spread", "filter", "gather"]
        return pipeline.run(stages, nodes, weights, kernel, x, shape)

    scripted = torch.jit.script(composed)
    arguments = (nodes, weights, _kernel(width), _input_of(["spread"], 1), NS)
    torch.testing.assert_close(scripted(*arguments), composed(*arguments))


@pytest.mark.parametrize("chain", CHAINS, ids="-".join)
def test_differentiable_gradients_equal_first_order_ones(chain):
    """The gradients built for second derivatives (``create_graph=True``) equal
    the first-order ones, which ``gradcheck`` checks: ``gradgradcheck`` alone
    would accept a differentiable gradient that is consistently wrong."""
    nodes, weights, width = _inputs()
    x = _input_of(chain, 1).requires_grad_(True)
    function = _run(chain, nodes)
    arguments = (weights, width, x)
    # a filter has no weights, spread and gather no kernel
    wanted = [x]
    if chain != ["filter"]:
        wanted.append(weights)
    if "filter" in chain:
        wanted.append(width)
    upstream = torch.randn(function(*arguments).shape).double()
    first = torch.autograd.grad(function(*arguments), wanted, upstream)
    graph = torch.autograd.grad(
        function(*arguments), wanted, upstream, create_graph=True
    )
    for a, b in zip(graph, first):
        assert a.requires_grad
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
