# Shared steps of scripts/setup.sh and scripts/test.sh. Each step is idempotent and quick when
# its work is already done, so both commands can run on a fresh machine or a warm one.

HARNESS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HARNESS_VENV:-$HARNESS_ROOT/.venv}"
SYSTEM_PACKAGES=(
  vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
  dnsmasq-base iptables ebtables mmdebstrap fdisk extlinux syslinux-common e2fsprogs
  binutils bubblewrap python3-venv python3-pip
  # unpacking a zstd-compressed kernel (6.12 on) for a direct boot without its decompressor
  zstd
  # compiling the debug box's kernel (harness box build debian-12-debug)
  build-essential bc bison flex libssl-dev libelf-dev dpkg-dev fakeroot rsync cpio kmod xz-utils
)

say() { printf '==> %s\n' "$*" >&2; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "This needs root: it installs system packages, starts libvirt and builds the box image." >&2
    echo "Run it as root (e.g. sudo $0)." >&2
    exit 1
  fi
}

ensure_system_packages() {
  local missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    say "system packages present"
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/harness" ] || [ "$HARNESS_ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
    say "installing the harness into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$HARNESS_ROOT[dev]"
    touch "$VENV/.installed"
  else
    say "python environment ready ($VENV)"
  fi
}

ensure_libvirt() {
  say "checking the host (starting libvirt's daemons when nothing else does)"
  "$VENV/bin/harness" doctor --fix >/dev/null 2>&1 || true
}

ensure_box() {
  "$VENV/bin/harness" box build "$@"
}

# The other boxes that vm tests ask for by name, each built on first use and then cached under
# ~/.cache/harness like the default box: the sanitizer box of tests/vm/test_planted_bugs.py (its
# kernel compiled, 15-25 min on 2 cores), the 6.12 kernel of tests/vm/test_newer_kernel.py and
# the 5.10 one of tests/vm/test_kernel_matrix.py (about a minute or two each).
ensure_other_boxes() {
  "$VENV/bin/harness" box build debian-12-debug
  "$VENV/bin/harness" box build debian-12-k6.12 debian-11
}
