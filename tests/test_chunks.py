"""Chunk lengths of the hot loops: chunks on CPU, everything at once elsewhere."""

import torch

from torchpme._core.chunks import chunk_length


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
