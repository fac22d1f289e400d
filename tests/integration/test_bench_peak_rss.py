"""The training benchmark's peak-memory launcher reports the command's own peak, not its parent's.

Linux carries a parent's high-water RSS into a child it starts, so a run started by the
benchmark runner (hundreds of MiB after training in process) reported the runner's peak for every
cohort size. ``benchmarks.peak_rss`` must report what the command itself used.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LAUNCHER = REPO / "benchmarks" / "peak_rss.py"

#: A parent that holds ``BIG`` MiB, starts a bare interpreter directly (the premise: its peak
#: comes out at least the parent's), then the launcher on a command; prints
#: "<exit status> <peak KiB via the launcher> <peak KiB of the direct start>".
PARENT = """
import os, subprocess, sys
from pathlib import Path
big = bytearray({big} * 2**20)
for i in range(0, len(big), 4096):
    big[i] = 1
direct = subprocess.Popen([sys.executable, "-c", "pass"])
_, _, usage = os.wait4(direct.pid, 0)
out = Path(sys.argv[1])
code = subprocess.run([sys.executable, {launcher!r}, str(out), *sys.argv[2:]]).returncode
print(code, out.read_text().strip() if out.exists() else "-", usage.ru_maxrss)
"""

BIG = 400


def launch(tmp_path: Path, *command: str) -> tuple[int, float]:
    """Exit status and peak MiB of ``command`` started through the launcher by a large parent."""
    out = tmp_path / "peak.kib"
    done = subprocess.run(
        [sys.executable, "-c", PARENT.format(big=BIG, launcher=str(LAUNCHER)), str(out), *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    code, kib, direct_kib = done.stdout.split()
    assert int(direct_kib) / 1024 >= BIG, "premise: a directly started child reports our peak"
    return int(code), int(kib) / 1024


def test_small_command_from_a_large_parent_reports_its_own_peak(tmp_path: Path) -> None:
    code, mib = launch(tmp_path, sys.executable, "-c", "pass")
    assert code == 0
    assert mib < BIG / 4, f"a bare interpreter reported {mib:.0f} MiB (the parent holds {BIG})"


def test_command_that_allocates_reports_at_least_what_it_touched(tmp_path: Path) -> None:
    touch = "b = bytearray(200 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1"
    code, mib = launch(tmp_path, sys.executable, "-c", touch)
    assert code == 0
    assert 200 <= mib < BIG


def test_exit_status_and_signal_pass_through(tmp_path: Path) -> None:
    assert launch(tmp_path, sys.executable, "-c", "raise SystemExit(3)")[0] == 3
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert launch(tmp_path, sys.executable, "-c", kill)[0] == 128 + 9


def test_usage_error_without_a_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), str(tmp_path / "peak.kib")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "usage" in done.stderr
    assert not (tmp_path / "peak.kib").exists()
