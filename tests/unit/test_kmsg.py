import warnings

import pytest

from harness.kmsg import Capture, ExpectTimeout, LiteralPatternWarning, parse_kmsg

RAW = (
    "6,100,5000000,-;Hello World\n"
    "4,101,5100000,-,caller=T12;tab\\x09and \\x5c backslash\n"
    " SUBSYSTEM=pci\n"
    " DEVICE=+pci:0000:00:01.0\n"
    "3,102,5200000,c;error line\n"
    "garbage without a header\n"
)


def test_records_levels_continuations_and_escapes():
    records = parse_kmsg(RAW)
    assert [r.seq for r in records] == [100, 101, 102]
    assert records[0].level_name == "info" and records[0].text == "Hello World"
    assert records[1].text == "tab\tand \\ backslash"
    assert records[1].properties == (("SUBSYSTEM", "pci"), ("DEVICE", "+pci:0000:00:01.0"))
    assert records[2].level == 3
    assert records[0].console_line() == "[    5.000000] Hello World"


class FakeLog:
    def __init__(self, batches):
        self.batches = batches

    def read(self):
        return parse_kmsg(self.batches.pop(0) if len(self.batches) > 1 else self.batches[0])


def test_capture_sees_only_records_after_its_cursor_and_counts_lost_ones():
    log = FakeLog(["6,10,1,-;old\n6,11,2,-;new one\n",
                   "6,10,1,-;old\n6,11,2,-;new one\n6,15,3,-;after a gap\n"])
    capture = Capture(log, cursor=10)
    assert capture.lines == ["new one"]
    assert capture.lines == ["new one", "after a gap"]
    assert capture.lost == 3
    assert "after a gap" in capture and "old" not in capture


def test_expect_fails_listing_the_lines_that_came():
    capture = Capture(FakeLog(["6,1,1,-;first\n6,2,2,-;second\n"]), cursor=0)
    assert capture.expect(r"sec\w+", timeout=0, regex=True) == "second"
    with pytest.raises(ExpectTimeout) as failure:
        capture.expect("third", timeout=0)
    assert "first" in str(failure.value) and "second" in str(failure.value)


BIRTHDAYS = "6,1,1,-;llist: birthday 1/1/2000\n6,2,2,-;llist: birthday 2/2/2001\n"


def test_a_plain_pattern_with_regex_syntax_that_matches_nothing_warns_and_says_how():
    # A teacher's test file written when strings were regexes: `grep(r"birthday \d+")`.
    capture = Capture(FakeLog([BIRTHDAYS]), cursor=0)
    with pytest.warns(LiteralPatternWarning, match=r"re\.compile\('llist: birthday \\\\d\+'\)"):
        found = capture.grep(r"llist: birthday \d+")
    assert found == [] and "regex=True" in repr(found)  # what a failing assertion shows
    with pytest.warns(LiteralPatternWarning):
        assert r"birthday \d+/" not in capture
    with pytest.warns(LiteralPatternWarning), pytest.raises(ExpectTimeout) as failure:
        capture.expect("^llist: .*2001$", timeout=0)
    assert "holds regular-expression syntax" in str(failure.value)


def test_plain_patterns_that_match_or_hold_no_regex_syntax_do_not_warn():
    capture = Capture(FakeLog([BIRTHDAYS]), cursor=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(capture.grep(r"llist: birthday \d+", regex=True)) == 2
        assert capture.grep("birthday 1/1") == ["llist: birthday 1/1/2000"]
        assert capture.grep("costs $5 or 1.5x") == []
        assert "nothing like this" not in capture
