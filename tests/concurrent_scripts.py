"""Scripts run as child processes two at a time, so that a module of script
tests keeps both cores busy (each child runs one thread) instead of waiting on
one interpreter start and one single-threaded script after another."""

import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, List, Optional

import pytest

WORKERS = 2


class ScriptRuns:
    """Commands started together at the first :meth:`result`, whose results are
    then handed out by name.

    Args:
        commands: ``{name: argv}`` of every script the module runs.
        cwd: the working folder of each child (``None``: the current one).
    """

    def __init__(self, commands: Dict[str, List[str]], cwd: Optional[str] = None):
        self._commands = commands
        self._cwd = cwd
        self._futures: Dict[str, Future] = {}
        self._pool: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        self._pool = ThreadPoolExecutor(WORKERS)
        for name, command in self._commands.items():
            self._futures[name] = self._pool.submit(
                subprocess.run, command, capture_output=True, text=True,
                cwd=self._cwd, env=environment, timeout=600,
            )  # fmt: skip
        self._pool.shutdown(wait=False)

    @classmethod
    def selected(
        cls, request: pytest.FixtureRequest, commands: Dict[str, List[str]], **kwargs
    ) -> "ScriptRuns":
        """The runs of ``commands`` whose name is part of the name of a test
        selected in this session (so that ``-m``/``-k`` start no unused run)."""
        names = " ".join(item.name for item in request.session.items)
        wanted = {k: v for k, v in commands.items() if k in names}
        return cls(wanted, **kwargs)

    def result(self, name: str) -> subprocess.CompletedProcess:
        """The finished run of ``name`` (all runs start at the first call)."""
        if self._pool is None:
            self._start()
        return self._futures[name].result()
