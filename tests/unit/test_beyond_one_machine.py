"""Configuration for running beyond one machine: a remote libvirt host, and shards of a suite.

The remote host's config is checked where it is made: the packaged Vagrantfile is evaluated by
Ruby with a recorder standing in for Vagrant's config object (every value it sets is kept), and
by `vagrant validate` itself. Sharding is pytest-split's: the shards' collections must partition
the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.boxes import load_catalogue
from harness.session import VMOptions, make_vm
from harness.vagrant_machine import PACKAGED_VAGRANTFILE
from harness.vm import VMSettings

ROOT = Path(__file__).resolve().parents[2]

RECORDER = r"""
require "json"
class Recorder
  def initialize; @values = {}; end
  def to_h; @values.transform_values { |v| v.is_a?(Recorder) ? v.to_h : v }; end
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **kw, &block)
    key = name.to_s
    if key.end_with?("=") then @values[key.chomp("=")] = args[0]
    elsif block
      child = Recorder.new
      block.call(child)
      @values["#{key}(#{args.join(',')})"] = child
    elsif args.empty? && kw.empty? then @values[key] ||= Recorder.new
    else @values[key] = args + (kw.empty? ? [] : [kw])
    end
  end
end
module Vagrant
  def self.configure(_version); $config = Recorder.new; yield $config; end
end
load ARGV[0]
puts JSON.generate($config.to_h)
"""


def vagrantfile_config(env: dict[str, str], tmp_path: Path) -> dict:
    if shutil.which("ruby") is None:
        pytest.skip("ruby (installed with vagrant) is not here")
    script = tmp_path / "record.rb"
    script.write_text(RECORDER)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    done = subprocess.run(["ruby", str(script), str(PACKAGED_VAGRANTFILE)], cwd=tmp_path,
                          env={**clean, "HARNESS_PROJECT_DIR": str(tmp_path), **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def vm_env(tmp_path: Path, **settings: object) -> dict[str, str]:
    box = load_catalogue(ROOT / "boxes.yaml").get("debian-12")
    from harness.vm import VM

    return VM(VMSettings(box=box, **settings), project_dir=tmp_path).vagrant.env()  # type: ignore[arg-type]


def only_harness(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("HARNESS_")}


def test_a_remote_libvirt_host_becomes_vagrant_libvirts_ssh_connection(tmp_path):
    env = only_harness(vm_env(tmp_path, driver="kvm", libvirt_host="kvm1.example",
                              libvirt_user="ci", libvirt_ssh_key="/keys/ci"))
    assert env["HARNESS_SERIAL_LOG"].startswith("/var/tmp/harness-")  # a path on that host
    provider = vagrantfile_config(env, tmp_path)["vm"]["provider(libvirt)"]
    assert provider["host"] == "kvm1.example"
    assert provider["connect_via_ssh"] is True
    assert provider["username"] == "ci"
    assert provider["id_ssh_key_file"] == "/keys/ci"
    assert provider["driver"] == "kvm"
    assert provider["serial"][0]["source"]["path"] == env["HARNESS_SERIAL_LOG"]


def test_without_a_remote_host_the_vm_is_local(tmp_path):
    env = only_harness(vm_env(tmp_path, driver="qemu", memory=3072, cpus=3))
    provider = vagrantfile_config(env, tmp_path)["vm"]["provider(libvirt)"]
    assert "host" not in provider and "connect_via_ssh" not in provider
    assert (provider["driver"], provider["memory"], provider["cpus"]) == ("qemu", 3072, 3)
    assert provider["default_prefix"] == env["HARNESS_DOMAIN_PREFIX"]
    assert provider["serial"][0]["source"]["path"] == str(tmp_path / ".harness" / "serial.log")


def test_vagrant_itself_validates_the_remote_config(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed here (scripts/test.sh installs it)")
    shutil.copyfile(PACKAGED_VAGRANTFILE, tmp_path / "Vagrantfile")
    env = vm_env(tmp_path, driver="kvm", libvirt_host="kvm1.example", libvirt_user="ci")
    done = subprocess.run(["vagrant", "validate"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "VAGRANT_DEFAULT_PROVIDER": "libvirt"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout


def test_virsh_talks_to_the_same_host_as_vagrant():
    box = load_catalogue(ROOT / "boxes.yaml").get("debian-12")
    assert VMSettings(box=box).libvirt_uri == "qemu:///system"
    remote = VMSettings(box=box, libvirt_host="kvm1.example", libvirt_user="ci",
                        libvirt_ssh_key="/keys/ci")
    assert remote.libvirt_uri == "qemu+ssh://ci@kvm1.example/system?keyfile=/keys/ci"


def test_the_environment_selects_a_remote_host_and_skips_the_local_kvm_probe(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("HARNESS_LIBVIRT_HOST", "kvm1.example")
    monkeypatch.setenv("HARNESS_LIBVIRT_USER", "ci")
    monkeypatch.setattr("harness.accel.probe", lambda: pytest.fail("probed the local KVM"))
    vm = make_vm(VMOptions(), tmp_path, catalogue_dir=ROOT)
    assert (vm.settings.libvirt_host, vm.settings.libvirt_user) == ("kvm1.example", "ci")
    assert vm.settings.driver == "kvm"


def collected(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests/unit", *args],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_shards_partition_the_suite():
    pytest.importorskip("pytest_split")
    everything = collected()
    shards = [collected("--splits", "3", "--group", str(k)) for k in (1, 2, 3)]
    assert all(shards)
    assert set().union(*shards) == everything
    assert sum(len(s) for s in shards) == len(everything)  # no test runs twice


def test_the_guest_is_reached_through_vagrant_libvirts_proxy_command():
    from harness.vagrant_machine import ssh_target_from_config

    target = ssh_target_from_config(
        "Host default\n  HostName 192.168.121.28\n  User vagrant\n  Port 22\n"
        "  IdentityFile /root/.vagrant.d/insecure_private_key\n"
        "  ProxyCommand ssh 'kvm1.example' -l 'ci' -i '/keys/ci' -W %h:%p\n", "vagrant")
    assert (target.host, target.port, target.user) == ("192.168.121.28", 22, "vagrant")
    assert target.key_file == "/root/.vagrant.d/insecure_private_key"
    assert target.proxy_command == "ssh 'kvm1.example' -l 'ci' -i '/keys/ci' -W 192.168.121.28:22"
    local = ssh_target_from_config("Host default\n  HostName 10.0.0.2\n  Port 2222\n", "vagrant")
    assert (local.port, local.user, local.proxy_command) == (2222, "vagrant", None)


def test_vagrants_progress_counter_does_not_flood_the_log():
    from harness.vagrant_machine import progress_free

    flood = "\x1b[K" + "\x1b[KProgress: 0%\r" * 3000 + "\x1b[KProgress: 100%\r\x1b[K\n"
    assert progress_free(flood) == ""
    assert progress_free("==> default: Creating image (snapshot of base box volume).\n") == \
        "==> default: Creating image (snapshot of base box volume)."
    assert progress_free("\x1b[KProgress: 99%\r\x1b[K==> default: Uploading done\n") == \
        "==> default: Uploading done"


def test_a_box_the_harness_built_boots_its_kernel_directly_without_display_or_nic_rom(tmp_path):
    from harness.boxes import DirectBoot

    direct = DirectBoot(Path("/pool/k"), Path("/pool/i"), "root=LABEL=root console=ttyS0")
    config = vagrantfile_config(only_harness(vm_env(tmp_path, direct_boot=direct)), tmp_path)
    provider = config["vm"]["provider(libvirt)"]
    assert (provider["kernel"], provider["initrd"], provider["cmd_line"]) == (
        "/pool/k", "/pool/i", "root=LABEL=root console=ttyS0")
    assert provider["graphics_type"] == "none" and provider["video_type"] == "none"
    assert provider["qemuargs"] == [{"value": "virtio-net-pci.romfile="}]  # the last call
    assert provider["usb_controller"] == [{"model": "none"}]
    assert config["vm"]["guest"] == "harness"  # Vagrant skips probing the guest's OS
    plain = vagrantfile_config(only_harness(vm_env(tmp_path)), tmp_path)["vm"]
    assert "kernel" not in plain["provider(libvirt)"]
    assert "graphics_type" not in plain["provider(libvirt)"]


def test_the_harness_network_is_vagrant_libvirts_management_network(tmp_path):
    env = {**only_harness(vm_env(tmp_path)), "HARNESS_NETWORK": "harness",
           "HARNESS_NETWORK_ADDRESS": "192.168.124.0/24"}
    provider = vagrantfile_config(env, tmp_path)["vm"]["provider(libvirt)"]
    assert provider["management_network_name"] == "harness"
    assert provider["management_network_address"] == "192.168.124.0/24"
    assert provider["management_network_keep"] is True  # it outlives the last VM on it
    without = {k: v for k, v in env.items() if not k.startswith("HARNESS_NETWORK")}
    assert "management_network_name" not in vagrantfile_config(
        without, tmp_path)["vm"]["provider(libvirt)"]


def test_a_remote_host_keeps_vagrant_libvirts_own_network(tmp_path):
    env = only_harness(vm_env(tmp_path, libvirt_host="kvm1.example"))
    assert "HARNESS_NETWORK" not in env


def test_a_cloud_box_keeps_its_own_boot_and_vagrants_guest_detection(tmp_path):
    from harness.vm import VM

    box = load_catalogue(ROOT / "boxes.yaml").get("fedora/31-cloud-base")
    env = only_harness(VM(VMSettings(box=box), project_dir=tmp_path).vagrant.env())
    config = vagrantfile_config(env, tmp_path)["vm"]
    assert "guest" not in config and "kernel" not in config["provider(libvirt)"]


def test_vagrant_ups_own_output_gives_the_ssh_target():
    from harness.vagrant_machine import address_from_up

    said = ["==> default: Waiting for machine to boot. This may take a few minutes...",
            "default: SSH address: 192.168.121.142:22", "default: SSH username: vagrant",
            "default: SSH auth method: private key"]
    assert address_from_up(said) == ("192.168.121.142", 22, "vagrant")
    assert address_from_up(said[:1]) is None
    assert address_from_up(["default: SSH address: [::1]:2222"]) == ("[::1]", 2222, None)
