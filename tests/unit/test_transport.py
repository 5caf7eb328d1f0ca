"""run_parts: several scripts in one command, each with its own output and exit status."""

from harness.transport import LocalTransport


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
