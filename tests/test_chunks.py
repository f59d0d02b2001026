"""Chunk lengths of the hot loops: chunks on CPU, everything at once elsewhere."""

import torch

from torchpme._core.chunks import chunk_length


def test_cpu_takes_chunks_and_other_devices_take_everything():
    assert chunk_length(64, 1000, torch.device("cpu")) == 64
    assert chunk_length(0, 1000, torch.device("cpu")) == 1  # never an empty step
    assert chunk_length(64, 1000, torch.device("meta")) == 1000
    assert chunk_length(64, 0, torch.device("meta")) == 1
