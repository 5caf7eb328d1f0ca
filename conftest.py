"""Project-wide pytest settings. The harness plugin itself is registered by its entry point."""

# Scenario files are whole pytest sessions that some vm tests run in a subprocess; they are
# meant to fail in places and are never collected directly.
collect_ignore_glob = ["tests/scenarios/*"]

# pytest's own fixture for running small in-memory pytest sessions (the plugin's unit tests).
pytest_plugins = ["pytester"]


def pytest_addoption(parser):
    parser.addoption(
        "--update-expected", action="store_true",
        help="rewrite the expected results of per-file tests (the crash titles of "
             "tests/unit/logs, the corpus differences) from what the code gives now; review "
             "the diff before committing")
