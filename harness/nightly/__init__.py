"""The nightly's memory: known failures, re-runs and flaky tests (pytest side), the history of
runs in SQLite, and the dashboard drawn from it."""
