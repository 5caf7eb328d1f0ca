"""Homework auto-grading: every submission built, loaded and tested in a clean guest kernel.

``spec`` (the assignment YAML), ``extract`` (safe unpacking of submissions), ``plugin`` (the
pytest side: one parametrized session, students on xdist workers with their own VMs),
``runner`` (the ``harness grade`` library entry) and ``report`` (gradebook CSV, JUnit XML,
Gradescope results.json, HTML).
"""
