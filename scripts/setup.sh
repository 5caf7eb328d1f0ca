#!/usr/bin/env bash
# The first README command: install everything (system packages, the Python package, the
# libvirt daemons, the default box), then run the main job: boot the VM, print the guest's
# kernel, and run the blog's hello module through build, insmod, dmesg and rmmod.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root
ensure_system_packages
ensure_venv
ensure_libvirt
ensure_box
"$VENV/bin/harness" doctor
cd "$HARNESS_ROOT"
"$VENV/bin/harness" vm up
"$VENV/bin/harness" run modules/hello
say "done. The VM keeps running for the next command; 'harness vm destroy' removes it."
