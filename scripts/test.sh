#!/usr/bin/env bash
# The second README command: the whole test suite, unit tests and tests in a real VM.
# Extra arguments go to pytest (e.g. -m "not vm" for the unit tests alone).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root
ensure_system_packages
ensure_venv
ensure_libvirt
ensure_box
case " $* " in
  *"not vm"*) ;;  # the unit tests alone need no VM, let alone the other boxes
  *) ensure_other_boxes ;;
esac
cd "$HARNESS_ROOT"
say "ruff"
"$VENV/bin/ruff" check harness tests
say "pytest"
"$VENV/bin/pytest" tests "$@"
