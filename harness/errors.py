"""The harness's errors: one base and a few named branches, caught by name, never as builtins.

```
HarnessError
├── ConfigurationError   options, catalogue, grading spec, a folder that is not a module
├── HostError            a command on this machine failed (vagrant, virsh, mmdebstrap, ...)
├── VMError              the VM could not be brought up, reached or restored
├── GuestUnreachable     the guest stopped answering: connection lost, guest died
│   └── CommandTimeout   a guest command did not finish in time (the guest may be hung)
├── CommandFailed        a guest command exited non-zero where success was required
├── BuildError           a module or a user-space program did not compile
├── ModuleError          insmod/rmmod refused in an ordinary way (bad parameter, in use)
├── KernelFailure        the kernel misbehaved: a test failure (also an AssertionError)
└── TimeLimitExceeded    a test ran past its time limit (also an AssertionError)
```

A bug in the harness (``TypeError``, ``RecursionError``) is none of these, so no ``except``
turns it into a verdict about the guest.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigurationError(HarnessError):
    """What the user asked for cannot be done as asked; the message says what to change."""


class CatalogueError(ConfigurationError, ValueError):
    """boxes.yaml is missing, unreadable or does not follow the schema."""


class HostError(HarnessError):
    """A command on this machine (vagrant, virsh, the box builder) failed."""


class VMError(HarnessError):
    """The VM could not be brought up, reached or restored; the message says what to do."""


class GuestUnreachable(HarnessError):
    """The guest stopped answering: connection refused, lost or timed out, or it died."""


class CommandTimeout(GuestUnreachable):
    """A command did not finish in time (the guest may be hung)."""

    def __init__(self, command: str, timeout: float, stdout: str, stderr: str):
        self.command, self.timeout, self.stdout, self.stderr = command, timeout, stdout, stderr
        super().__init__(f"`{command}` did not finish within {timeout:g} s")


class CommandFailed(HarnessError):
    """A guest command exited with a status the caller did not accept.

    ``result`` has the command, the exit status, stdout and stderr; the message shows them all,
    so a failing test says what ran, as whom, and what it printed.
    """

    def __init__(self, result, expected: tuple[int, ...] = (0,), user: str = "") -> None:
        self.result = result
        as_whom = f" as {user}" if user else ""
        want = "0" if expected == (0,) else " or ".join(str(s) for s in expected)
        parts = [f"`{result.command}`{as_whom} exited {result.exit_status} (expected {want})"]
        for name in ("stderr", "stdout"):
            text = getattr(result, name).strip()
            if text:
                lines = text.splitlines()
                shown = "\n".join(f"  {line}" for line in lines[-20:])
                more = f"  ({len(lines) - 20} earlier lines not shown)\n" if len(lines) > 20 else ""
                parts.append(f"{name}:\n{more}{shown}")
        if len(parts) == 1:
            parts.append("(it printed nothing)")
        super().__init__("\n".join(parts))


class BuildError(HarnessError):
    """A module or a user-space program did not compile; the message starts with the errors."""


class ModuleError(HarnessError):
    """A module operation failed in an ordinary way (bad parameter, load refused, in use)."""


class KernelFailure(HarnessError, AssertionError):
    """The kernel misbehaved (crashed, hung, or did not log what was expected): a test failure."""


class TimeLimitExceeded(HarnessError, AssertionError):
    """A test ran past the time it was given (e.g. a grading spec's ``time_limits.test_s``);
    the guest may be stuck inside it, so it gets a clean kernel afterwards."""
