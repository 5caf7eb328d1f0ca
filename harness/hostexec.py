"""Running commands on the host (never student code: that only ever runs in the guest)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HostError


class HostCommandError(HostError):
    """A host command failed; the message names the command and ends with its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-25:])
        super().__init__(f"`{shlex.join(self.argv)}` exited {returncode}:\n{tail}")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing stdout and stderr together as text."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            input=input_text,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise HostCommandError(argv, 127, f"{argv[0]}: command not found") from err
    except subprocess.TimeoutExpired as err:
        out = err.output.decode() if isinstance(err.output, bytes) else (err.output or "")
        raise HostCommandError(argv, -1, f"{out}\n(timed out after {timeout} s)") from err
    if check and proc.returncode != 0:
        raise HostCommandError(argv, proc.returncode, proc.stdout)
    return proc


def run_streaming(
    argv: Sequence[str],
    *,
    prefix: str = "  ",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stream=None,
) -> None:
    """Run a long command, echoing its output lines as progress; raise on failure."""
    stream = stream or sys.stderr
    tail: list[str] = []
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        print(prefix + line.rstrip(), file=stream, flush=True)
    if proc.wait() != 0:
        raise HostCommandError(argv, proc.returncode, "\n".join(tail))


class Stopwatch:
    """Prints `==> step` lines with the seconds each step took."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"==> [{elapsed:6.1f}s] {text}", file=self.stream, flush=True)
