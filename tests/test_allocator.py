"""``torchpme.keep_freed_memory``: a process-wide allocator setting, applied in a
child process so that the test session keeps its own allocator behaviour."""

import subprocess
import sys

import pytest

import torchpme


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_settings_are_accepted_and_results_unchanged():
    code = """
import torch, torchpme
from torchpme._core import allocator
expected = allocator._mallopt() is not None
assert torchpme.keep_freed_memory() is expected
a = torch.arange(1 << 22, dtype=torch.float64)  # 32 MB: heap or mmap, both fine
del a
b = torch.ones(1 << 21, dtype=torch.float64)
print(float(b.sum()), expected)
"""
    total, applied = _run(code).split()
    assert float(total) == 2.0**21
    if sys.platform.startswith("linux") and "glibc" in " ".join(
        __import__("platform").libc_ver()
    ):
        assert applied == "True"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"trim_threshold": -1}, ValueError),
        ({"top_pad": 2**31}, ValueError),
        ({"mmap_threshold": 1.5}, TypeError),
        ({"mmap_threshold": True}, TypeError),
    ],
)
def test_bad_settings_are_refused_before_anything_changes(arguments, error):
    with pytest.raises(error, match=next(iter(arguments))):
        torchpme.keep_freed_memory(**arguments)
