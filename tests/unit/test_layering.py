"""The layering the README's "How it is built" table promises, checked by importing."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Pure parts: text in, data out. Whoever reads a crash log (a CI job, `harness oops`) must not
# need an SSH stack, Vagrant or pytest for it.
PURE_MODULES = ["harness.oops.detect", "harness.oops.symbolize", "harness.oops.logtext",
                "harness.grade.report", "harness.grade.spec", "harness.kernelbuild",
                "harness.leaks", "harness.kmem"]
HEAVY = ["paramiko", "vagrant", "pytest", "harness.transport", "harness.vm"]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_transport_vm_or_pytest(module):
    probe = (f"import sys, {module}; "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"
