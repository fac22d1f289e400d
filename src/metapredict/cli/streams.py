"""The CLI's two streams: a command's result on stdout, everything else on stderr.

Libraries do not all log politely: some attach their own handlers (to stdout), some ``print``,
and LightGBM's C++ core writes to file descriptor 1 directly. So the entry point
(:func:`setup`, given the app's context) sends logging to stderr, points any handler already
writing to stdout at stderr, and, when the process owns a real stdout, moves file descriptor 1
onto stderr for the rest of the run, keeping a private copy of the real stdout that only
:func:`result_stream` hands out.
A command that has a result (``compare --format json``, ...) writes it there and nowhere else.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import typer
from rich.console import Console
from rich.logging import RichHandler

#: Key of the result stream in the context's ``meta`` (shared by the command's context).
_RESULT_KEY = "metapredict.result_stream"


def configure_logging(verbose: bool) -> None:
    """Root logging to stderr (rich), and no handler anywhere left writing to stdout."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
        force=True,
    )
    stdout_streams = {id(s) for s in (sys.stdout, sys.__stdout__) if s is not None}
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in stdout_streams:
                handler.setStream(sys.stderr)


def guard_stdout() -> TextIO:
    """The stream a command's result goes to; anything else written to stdout reaches stderr.

    In a process of its own (``sys.stdout`` is the interpreter's real stdout), file descriptor
    1 is duplicated for the result and then pointed at stderr, so that ``print`` in a library
    and C extensions writing to fd 1 land on stderr. Under a test runner that captures
    ``sys.stdout`` (typer's ``CliRunner``), nothing is redirected and ``sys.stdout`` is the
    result stream.
    """
    stdout: TextIO = sys.stdout
    if stdout is None or stdout is not sys.__stdout__:
        return stdout
    try:
        fd = stdout.fileno()
        stdout.flush()
        result = os.fdopen(os.dup(fd), "w", encoding=stdout.encoding, errors="replace")
        os.dup2(sys.stderr.fileno(), fd)
    except (OSError, ValueError):  # no real descriptor (closed, or an in-memory stream)
        return stdout
    return result


def asks_for_help(argv: list[str], help_names: list[str]) -> bool:
    """True when the command line asks for a help page (which is then the result)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in help_names:
            return True
    return False


def setup(ctx: typer.Context, *, verbose: bool) -> None:
    """Called once by the app's callback, before any command runs."""
    configure_logging(verbose)
    # The app's callback runs before a subcommand's --help is handled: help goes to stdout.
    if asks_for_help(sys.argv[1:], ctx.help_option_names):
        return
    ctx.meta[_RESULT_KEY] = guard_stdout()


def result_stream(ctx: typer.Context) -> TextIO:
    """Where the running command writes its result (stdout, never shared with logs)."""
    stream: TextIO | None = ctx.meta.get(_RESULT_KEY)
    return stream if stream is not None else sys.stdout


def echo_result(ctx: typer.Context, text: str) -> None:
    """Write ``text`` and a newline as the command's result."""
    stream = result_stream(ctx)
    stream.write(text + "\n")
    stream.flush()


def result_console(ctx: typer.Context) -> Console:
    """A rich console on the result stream (tables that are a command's result)."""
    return Console(file=result_stream(ctx), soft_wrap=True)
