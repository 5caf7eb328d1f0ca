import json
from pathlib import Path

from harness.cli import main

LOGS = Path(__file__).parent / "logs"


def test_oops_json_lists_reports_and_exits_1(capsys):
    assert main(["oops", "--json", str(LOGS / "bug.console")]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["title"] == "kernel BUG in crashy_init"
    assert set(report) >= {"title", "kind", "function", "module", "module_function", "location",
                           "corrupted", "panicked", "start_line", "end_line"}


def test_oops_exit_codes_for_clean_and_unreadable_files(tmp_path, capsys):
    clean = tmp_path / "clean.log"
    clean.write_text("[ 1.0] Hello World\n")
    assert main(["oops", str(clean)]) == 0
    assert "no crash report" in capsys.readouterr().out
    assert main(["oops", "--json", str(clean)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["oops", str(tmp_path / "missing.log")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_box_list_shows_the_catalogue(capsys):
    assert main(["box", "list"]) == 0
    assert "fedora/31-cloud-base" in capsys.readouterr().out
