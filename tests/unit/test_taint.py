from harness.taint import decode, describe, new_failures


def test_out_of_tree_and_unsigned_are_not_failures_but_die_and_warn_are():
    before = 0
    after = (1 << 12) | (1 << 13) | (1 << 7) | (1 << 9)  # O, E, D, W
    assert [f.letter for f in decode(after)] == ["D", "W", "O", "E"]
    failures = new_failures(before, after)
    assert [f.letter for f in failures] == ["D", "W"]
    assert "D (kernel died recently" in describe(failures)


def test_only_newly_set_bits_count():
    assert new_failures(1 << 9, 1 << 9) == []
    assert [f.letter for f in new_failures(1 << 9, (1 << 9) | (1 << 14))] == ["L"]
