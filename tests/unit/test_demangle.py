"""Rust v0 symbol names, as the kernel prints a Rust module's frames, demangled for titles.

The cases are the Linux perf tool's own (tools/perf/tests/demangle-rust-v0-test.c) and the
rust_begin_unwind frame of a Rust panic in the kernel."""

from __future__ import annotations

import pytest

from harness.oops.demangle import demangle


@pytest.mark.parametrize(("mangled", "demangled"), [
    ("_RNvMsr_NtCs3ssYzQotkvD_3std4pathNtB5_7PathBuf3newCs15kBYyAo9fc_7mycrate",
     "<std::path::PathBuf>::new"),
    ("_RNvCs15kBYyAo9fc_7mycrate7example", "mycrate::example"),
    ("_RNvMs_Cs4Cv8Wi1oAIB_7mycrateNtB4_7Example3foo", "<mycrate::Example>::foo"),
    ("_RNvXCs15kBYyAo9fc_7mycrateNtB2_7ExampleNtB2_5Trait3foo",
     "<mycrate::Example as mycrate::Trait>::foo"),
    ("_RNvMCs7qp2U7fqm6G_7mycrateNtB2_7Example3foo", "<mycrate::Example>::foo"),
    ("_RNvMs_Cs7qp2U7fqm6G_7mycrateNtB4_7Example3bar", "<mycrate::Example>::bar"),
    ("_RNvYNtCs15kBYyAo9fc_7mycrate7ExampleNtB4_5Trait7exampleB4_",
     "<mycrate::Example as mycrate::Trait>::example"),
    ("_RNCNvCsgStHSCytQ6I_7mycrate4main0B3_", "mycrate::main::{closure#0}"),
    ("_RNCNvCsgStHSCytQ6I_7mycrate4mains_0B3_", "mycrate::main::{closure#1}"),
    ("_RINvCsgStHSCytQ6I_7mycrate7examplelKj1_EB2_", "mycrate::example::<i32, 1>"),
    ("_RINvCs7qp2U7fqm6G_7mycrate7exampleFG0_RL1_hRL0_tEuEB2_",
     "mycrate::example::<for<'a, 'b> fn(&'a u8, &'b u16)>"),
    ("_RINvCs7qp2U7fqm6G_7mycrate7exampleKy12345678_EB2_", "mycrate::example::<305419896>"),
    ("_RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind", "__rustc::rust_begin_unwind"),
])
def test_rust_v0_names(mangled: str, demangled: str):
    assert demangle(mangled) == demangled


@pytest.mark.parametrize("name", [
    "crashy_init", "_RNv", "_RNvC", "_RNvCs_3foo", "_RB9_", "_RNvC999foo", "__x64_sys_read",
    "_R" + "I" * 500 + "C3foo" + "E" * 500,
    "_RINvC3foo3barKcffffffffffffffffffff_EB2_",  # a char constant beyond any code point
])
def test_other_or_broken_names_come_back_unchanged(name: str):
    assert demangle(name) == name
