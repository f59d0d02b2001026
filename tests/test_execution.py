"""The execution rule of ``torchpme._core.execution``: what counts as traced,
where the Triton kernels and the host FFT serve, chunk lengths of the hot loops
(chunks on CPU, everything at once elsewhere) and the chunk sizes of
``torchpme._core.defaults``, read when the loops run."""

import pytest
import torch

from torchpme._core import defaults, execution
from torchpme._core.execution import chunk_length


def test_traced_under_vmap_and_compile_only():
    x = torch.zeros(3)
    assert not execution.traced(x)
    seen = []
    torch.func.vmap(lambda row: seen.append(execution.traced(row)) or row)(
        torch.zeros(2, 3)
    )
    assert seen == [True]

    def probe(x):
        return x + (1.0 if execution.traced(x) else 0.0)

    compiled = torch.compile(probe, fullgraph=True, backend="eager")
    assert float(compiled(x).sum()) == 3.0


def test_no_triton_kernels_on_cpu_or_when_traced():
    assert execution.kernels_for(torch.zeros(3)) is None
    assert execution.kernels_for(torch.zeros(3, device="meta")) is None


def test_host_fft_only_for_large_single_cpu_meshes(monkeypatch):
    pytest.importorskip("scipy")
    monkeypatch.setattr(defaults, "HOST_FFT_MIN_POINTS", 64)
    assert execution.host_fft_for(torch.zeros(1, 4, 4, 4), (4, 4, 4)) is not None
    assert execution.host_fft_for(torch.zeros(1, 4, 4, 3), (4, 4, 3)) is None
    assert execution.host_fft_for(torch.zeros(2, 4, 4, 4), (4, 4, 4)) is None
    meta = torch.zeros(1, 4, 4, 4, device="meta")
    assert execution.host_fft_for(meta, (4, 4, 4)) is None


def test_cpu_takes_chunks_and_other_devices_take_everything():
    assert chunk_length(64, 1000, torch.device("cpu")) == 64
    assert chunk_length(0, 1000, torch.device("cpu")) == 1  # never an empty step
    assert chunk_length(64, 1000, torch.device("meta")) == 1000
    assert chunk_length(64, 0, torch.device("meta")) == 1


def test_compiled_code_takes_everything_at_once():
    """While torch.compile traces, a chunk loop would be unrolled into the graph:
    the whole length is one chunk there, on CPU too."""

    def length(x):
        return x.new_full((), chunk_length(64, 1000, x.device))

    x = torch.zeros(())
    assert int(length(x)) == 64
    compiled = torch.compile(length, fullgraph=True, backend="eager")
    assert int(compiled(x)) == 1000


def test_ewald_chunks_follow_the_defaults(monkeypatch):
    """Ewald sums take ``defaults.EWALD_ENTRIES`` (k-vectors × atoms) per chunk,
    read when they run: with the k-vectors split over several chunks, energy and
    forces still match the independent Ewald sum of ``tests/reference.py``."""
    import numpy as np
    from reference import ewald_sum, torch_neighbors

    from torchpme import CoulombPotential, EwaldCalculator
    from torchpme._core import defaults, pairs

    rng = np.random.default_rng(7)
    cell = np.array([[5.0, 0.3, 0.0], [0.0, 4.6, 0.2], [0.4, 0.0, 5.3]])
    positions = rng.uniform(0.0, 1.0, (6, 3)) @ cell
    charges = np.array([1.0, -1.0, 0.5, -0.5, 0.8, -0.8])
    energy_ref, _, forces_ref = ewald_sum(positions, charges, cell)

    monkeypatch.setattr(defaults, "EWALD_ENTRIES", 500 * len(charges))
    assert pairs.chunk_size(len(charges)) == 500
    positions_t = torch.tensor(positions, requires_grad=True)
    cell_t, charges_t = torch.tensor(cell), torch.tensor(charges).unsqueeze(1)
    calculator = EwaldCalculator(CoulombPotential(smearing=0.8), lr_wavelength=0.25)
    indices, distances = torch_neighbors(positions_t, cell_t, 6.0)
    potentials = calculator(charges_t, cell_t, positions_t, indices, distances)
    energy = (charges_t * potentials).sum()
    (gradient,) = torch.autograd.grad(energy, positions_t)
    assert float(energy.detach()) == pytest.approx(energy_ref, rel=1e-10)
    np.testing.assert_allclose(-gradient.numpy(), forces_ref, atol=1e-9)
