"""What the clean snapshot needs around it to be resumed, kept beside it in the project's state
folder (``snapshot-surroundings.json``): the libvirt networks the domain was on (their XML),
and the guest's SSH address at the time.

vagrant-libvirt removes its management network when another project destroys the last running
VM on it, and the guest's DHCP lease goes with the network (vagrant then cannot say the
guest's address until the guest renews it, up to half an hour later); a resumed guest keeps
its snapshot's address. A new boot forgets both: it has no clean snapshot yet.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from harness.transport import SSHTarget

SURROUNDINGS_FILE = "snapshot-surroundings.json"


@dataclass
class SnapshotSurroundings:
    path: Path

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {"networks": {}, "ssh": None}

    def networks(self) -> dict[str, str]:
        """Network name -> its XML, as the domain was attached when the snapshot was taken."""
        return self._load().get("networks") or {}

    def ssh_target(self) -> SSHTarget | None:
        saved = self._load().get("ssh")
        return SSHTarget(**saved) if saved else None

    def record(self, networks: dict[str, str], target: SSHTarget | None) -> None:
        self.path.write_text(json.dumps(
            {"networks": networks, "ssh": dataclasses.asdict(target) if target else None}))

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
