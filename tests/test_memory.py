"""Huge-page hints for large fresh buffers (``torchpme._core.memory``): a hint only,
so results must not change, and it must do nothing where it does not apply."""

import sys

import pytest
import torch

from torchpme._core import memory


def test_large_buffer_is_advised_and_usable():
    n = (memory.MIN_BYTES // 8) * 3 + 5  # not a multiple of the huge page size
    buffer = memory.empty([n], torch.zeros(1), torch.float64)
    assert buffer.shape == (n,) and buffer.dtype == torch.float64
    buffer.copy_(torch.arange(n, dtype=torch.float64))
    assert float(buffer[-1]) == n - 1 and float(buffer.sum()) == n * (n - 1) / 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux madvise")
def test_madvise_is_found_and_accepts_an_aligned_range():
    madvise = memory._madvise()
    assert madvise is not None
    buffer = torch.empty(4 * memory._HUGE_PAGE, dtype=torch.uint8)
    start = (buffer.data_ptr() + memory._HUGE_PAGE - 1) & ~(memory._HUGE_PAGE - 1)
    assert madvise(start, memory._HUGE_PAGE, memory._MADV_HUGEPAGE) in (0, -1)


def test_small_and_non_cpu_buffers_are_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda *args: calls.append(args))
    small = torch.empty(16)
    assert memory.advise(small) is small
    meta = torch.empty(memory.MIN_BYTES, dtype=torch.uint8, device="meta")
    assert memory.advise(meta) is meta
    assert calls == []
    large = torch.empty(2 * memory.MIN_BYTES, dtype=torch.uint8)
    assert memory.advise(large) is large
    ((start, length, advice),) = calls
    assert start % memory._HUGE_PAGE == 0 and length % memory._HUGE_PAGE == 0
    assert large.data_ptr() <= start
    assert start + length <= large.data_ptr() + large.numel()
    assert advice == memory._MADV_HUGEPAGE


def test_empty_like_follows_the_tensor():
    like = torch.zeros((3, 4), dtype=torch.float32)
    buffer = memory.empty_like(like)
    assert buffer.shape == like.shape and buffer.dtype == like.dtype
