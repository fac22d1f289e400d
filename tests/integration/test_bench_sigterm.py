"""A benchmark part ended by SIGTERM stops the servers it started.

Each server runs in its own process group (so the load it takes is its own), which the default
SIGTERM action of the part would leave running; ``benchmarks.common.options`` makes SIGTERM
raise instead, so the part's context managers stop them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import wait_until

REPO = Path(__file__).resolve().parents[2]

#: A part in miniature: its options, then a server held open until the part is ended.
PART = """
import os, signal, sys
from pathlib import Path
from benchmarks import common
common.options(common.parser("a part").parse_args([]), "test")
server = common.Server(
    "idle", [sys.executable, "-c", "import signal; signal.pause()"], dict(os.environ),
    Path(sys.argv[1]),
)
with server:
    print(server.pid, flush=True)
    signal.pause()  # until a signal: SIGTERM raises SystemExit here
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_ends_a_part_and_the_servers_it_started(tmp_path: Path) -> None:
    part = subprocess.Popen(
        [sys.executable, "-c", PART, str(tmp_path / "server.log")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    server = 0
    try:
        assert part.stdout is not None
        server = int(part.stdout.readline())
        assert _group_alive(server)

        part.send_signal(signal.SIGTERM)

        assert part.wait(timeout=60) == 128 + signal.SIGTERM
        wait_until(lambda: not _group_alive(server), 30, "the server's process group to end")
    finally:
        if part.poll() is None:
            part.kill()
            part.wait()
        if server and _group_alive(server):  # what this test started, even when it fails
            os.killpg(server, signal.SIGKILL)
