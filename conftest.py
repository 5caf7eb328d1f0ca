"""Project-wide pytest settings. The harness plugin itself is registered by its entry point."""

# Scenario files are whole pytest sessions that some vm tests run in a subprocess; they are
# meant to fail in places and are never collected directly.
collect_ignore_glob = ["tests/scenarios/*"]

# pytest's own fixture for running small in-memory pytest sessions (the plugin's unit tests).
pytest_plugins = ["pytester"]
