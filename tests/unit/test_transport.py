"""run_parts: several scripts in one command, each with its own output and exit status; the SSH
read loop against a server that sends the exit status before the last output."""

import time
from types import SimpleNamespace

from harness.transport import EOF_GRACE_S, LocalTransport, SSHTarget, SSHTransport


def test_each_part_keeps_its_output_streams_and_status(tmp_path):
    results = LocalTransport(tmp_path).run_parts({
        "plain": "echo hello; echo complaint >&2",
        "unterminated": "printf 'no newline'; (exit 3)",
        "silent": "true",
        "blank lines": "printf 'x\\n\\n'",
        "failing": "false",
        "after a failure": "echo still here",
    })
    got = {name: (r.stdout, r.stderr, r.exit_status) for name, r in results.items()}
    assert got == {
        "plain": ("hello\n", "complaint\n", 0),
        "unterminated": ("no newline", "", 3),
        "silent": ("", "", 0),
        "blank lines": ("x\n\n", "", 0),
        "failing": ("", "", 1),
        "after a failure": ("still here\n", "", 0),
    }


class TrailingOutputChannel:
    """A channel whose server sends the exit status first and the last output after it."""

    def __init__(self, then: list[bytes], eof: bool = True):
        self.then, self.eof, self.eof_received = then, eof, False
        self.polls = 0

    def recv_ready(self) -> bool:
        self.polls += 1
        return self.polls > 3 and bool(self.then)  # arrives a few polls after the status

    def recv(self, size: int) -> bytes:
        data = self.then.pop(0)
        self.eof_received = self.eof and not self.then
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def get_transport(self):
        return SimpleNamespace(is_active=lambda: True)

    def close(self) -> None:
        pass


def test_output_after_the_exit_status_is_kept(monkeypatch):
    transport = SSHTransport(SSHTarget("guest", 22, "vagrant", "/dev/null"))
    channel = TrailingOutputChannel([b"12288\n", b"@harness-part:0\n"])
    monkeypatch.setattr(transport, "_open_channel", lambda *args, **kwargs: channel)
    assert transport.run("cat /proc/sys/kernel/tainted").stdout == "12288\n@harness-part:0\n"


def test_a_command_that_never_closes_its_output_returns_after_a_grace(monkeypatch):
    transport = SSHTransport(SSHTarget("guest", 22, "vagrant", "/dev/null"))
    channel = TrailingOutputChannel([], eof=False)  # a daemon kept stdout open
    monkeypatch.setattr(transport, "_open_channel", lambda *args, **kwargs: channel)
    started = time.monotonic()
    assert transport.run("daemon &").exit_status == 0
    assert EOF_GRACE_S <= time.monotonic() - started < EOF_GRACE_S + 1


def _slow_connect(refuse_root: bool, seconds: float = 0.3):
    from harness.transport import ROOT, _LoginRefused

    def connect(self, user: str):
        time.sleep(seconds)  # the guest's side of a login
        if refuse_root and user == ROOT:
            raise _LoginRefused(user)
        return SimpleNamespace(user=user, close=lambda: None)
    return connect


def test_dial_opens_the_users_and_roots_logins_at_once(monkeypatch):
    from harness import transport

    monkeypatch.setattr(transport.paramiko, "SSHClient", SimpleNamespace)
    monkeypatch.setattr(SSHTransport, "_connect", _slow_connect(refuse_root=False))
    ssh = SSHTransport(SSHTarget("127.0.0.1", 22, "vagrant", "/dev/null"))
    started = time.monotonic()
    ssh.dial()
    assert time.monotonic() - started < 0.55  # two 0.3 s logins side by side
    assert sorted(ssh._clients) == ["root", "vagrant"]
    ssh.dial()  # both open: nothing to do


def test_dial_falls_back_to_sudo_when_root_is_refused(monkeypatch):
    from harness import transport

    monkeypatch.setattr(transport.paramiko, "SSHClient", SimpleNamespace)
    monkeypatch.setattr(SSHTransport, "_connect", _slow_connect(refuse_root=True, seconds=0))
    ssh = SSHTransport(SSHTarget("127.0.0.1", 22, "vagrant", "/dev/null"))
    ssh.root_login = None
    ssh.dial()
    assert list(ssh._clients) == ["vagrant"] and ssh.root_login is False
