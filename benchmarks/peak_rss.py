"""Run a command and write its own peak resident memory (KiB) to a file.

Why a launcher: Linux carries a process's high-water resident memory across ``fork`` and
``exec`` (the new program's ``ru_maxrss`` starts at its parent's peak), so a command started
directly by the benchmark runner, which holds several hundred MiB after training in process,
reports at least the runner's peak whatever it uses itself. This launcher is a bare interpreter
(stdlib only, about 10 MiB): the command it starts inherits the launcher's peak, not the
runner's, and ``wait4`` then gives the command's own peak (including any children it waited for).

Usage: ``python benchmarks/peak_rss.py OUT_FILE COMMAND [ARGS...]``. The exit status is the
command's (128 + signal number if a signal ended it). OUT_FILE is written only when the command
ends, so a launcher killed with its command (same process group) leaves no number behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python benchmarks/peak_rss.py OUT_FILE COMMAND [ARGS...]", file=sys.stderr)
        return 2
    out, command = Path(args[0]), args[1:]
    pid = os.posix_spawnp(command[0], command, dict(os.environ))
    _, status, usage = os.wait4(pid, 0)
    out.write_text(f"{usage.ru_maxrss}\n")  # KiB on Linux
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
