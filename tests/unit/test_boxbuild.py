from harness.boxbuild import mirror_lines, parse_apt_sources

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main contrib
"""


def test_deb822_sources_are_read_binary_only():
    sources = parse_apt_sources(DEB822, deb822=True)
    assert [s.uri for s in sources] == ["http://mirror.example/debian",
                                        "http://security.example/debian-security"]
    assert sources[0].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_one_line_sources_with_options():
    text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    (source,) = parse_apt_sources(text, deb822=False)
    assert source.uri == "http://m.example/debian" and source.signed_by == "/k.gpg"


def test_mirror_lines_come_from_the_hosts_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    lines = mirror_lines("bookworm", None, etc_apt=tmp_path)
    assert lines[0].endswith("http://mirror.example/debian bookworm bookworm-updates main")
    assert lines[1] == "deb http://security.example/debian-security bookworm-security main contrib"
    assert mirror_lines("bookworm", "http://given.example/d", etc_apt=tmp_path) == [
        "deb http://given.example/d bookworm main"]
