"""harness: prove Linux kernel modules work by running them in real virtual machines.

Folders follow the concerns: ``boxes``/``boxbuild`` (catalogue, offline box building),
``doctor`` (host checks, KVM probe), ``vm`` (lifecycle on python-vagrant), ``transport``
(SSH with paramiko), ``plugin`` (pytest), ``cli`` (the ``harness`` command).
"""

__version__ = "0.1.0"
