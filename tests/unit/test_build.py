from harness.build import Diagnostic, make_command, parse_diagnostics

LOG = """make: Entering directory '/usr/src/linux-headers-6.1.0-56-amd64'
  CC [M]  /tmp/harness/broken-1234/broken.c
/tmp/harness/broken-1234/broken.c: In function 'broken_init':
/tmp/harness/broken-1234/broken.c:5:17: error: expected ';' before '}' token
/tmp/harness/broken-1234/broken.c:4:13: warning: unused variable 'x' [-Wunused-variable]
/tmp/harness/broken-1234/sub/util.h:2: note: declared here
ERROR: modpost: "missing_symbol" [/tmp/harness/broken-1234/broken.ko] undefined!
make[1]: *** [scripts/Makefile.build:250: /tmp/harness/broken-1234/broken.o] Error 1
"""


def test_diagnostics_are_parsed_and_mapped_to_host_paths():
    found = parse_diagnostics(LOG, {"/tmp/harness/broken-1234": "modules/broken"})
    assert found[0] == Diagnostic("modules/broken/broken.c", 5, 17, "error",
                                  "expected ';' before '}' token")
    assert str(found[0]) == "modules/broken/broken.c:5: error: expected ';' before '}' token"
    assert found[1].severity == "warning" and found[1].line == 4
    assert found[2].file == "modules/broken/sub/util.h" and found[2].column is None
    assert found[3].severity == "error" and "missing_symbol" in found[3].message
    assert len(found) == 4  # make's own "Error 1" line is not a compiler diagnostic


def test_make_command_quotes_the_folder_and_flags():
    command = make_command("/tmp/a b", extra_cflags="-Werror -g")
    assert "M='/tmp/a b'" in command and "KCFLAGS='-Werror -g'" in command
