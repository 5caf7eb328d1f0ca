"""The smallest real `pytest -m vm` session: what the bench times to its first result."""

import pytest


@pytest.mark.vm
def test_hello_loads(kmod, dmesg):
    with kmod("modules/hello"):
        pass
    assert "Hello World" in dmesg
