"""The ``tensorzip`` command: a thin layer over the public API.

Every subcommand prints a human summary (or ``--json`` for scripts), shows a
progress bar on a terminal, and turns a TensorzipError into one line on stderr
with exit status 1. Each command group registers itself from its own module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import TensorzipError
from . import analyze as cli_analyze
from . import checkpoints
from . import contents as cli_contents
from . import embeddings as cli_embeddings
from .common import number_in

MAX_THREADS = 256


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorzip", description="Lossless compression for neural-network checkpoints."
    )
    parser.add_argument("--version", action="version", version=f"tensorzip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], dict[str, Any]],
               threads: bool = True) -> argparse.ArgumentParser:
        sub.set_defaults(handler=handler)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        if threads:
            sub.add_argument("--threads", type=number_in(int, 1, MAX_THREADS), default=None,
                             help=f"worker threads, 1 to {MAX_THREADS} (default: all cores)")
        return sub

    def add(name: str, handler: Callable[[argparse.Namespace], dict[str, Any]], help_text: str,
            threads: bool = True) -> argparse.ArgumentParser:
        return common(commands.add_parser(name, help=help_text, description=help_text), handler, threads)

    checkpoints.add_commands(commands, add)
    cli_embeddings.add_commands(commands, common)
    cli_analyze.add_command(commands, common)
    cli_contents.add_commands(commands, add)

    return parser


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt, so every write
    unwinds through its cleanup (no output, no temporary file) before the process exits."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 1 an error (one line on stderr; with --json
    also ``{"error": {"code": <TensorzipError subclass name>, "message": ...}}`` on stdout), 2 a usage
    error, 3 a salvage that lost tensors (what it could read was written), 130 / 143 / 129
    interrupted by SIGINT / SIGTERM / SIGHUP (nothing left behind), 141 the reader of our
    output went away (a closed pipe: quietly)."""
    args = build_parser().parse_args(argv)
    handled = (signal.SIGTERM, signal.SIGHUP)
    own_signals = threading.current_thread() is threading.main_thread()
    previous = {number: signal.signal(number, _stop) for number in handled} if own_signals else {}
    try:
        result = args.handler(args)
        if args.json:
            print(json.dumps(result, indent=2))
        sys.stdout.flush()
        return getattr(args, "exit_status", 0)  # 3: salvage wrote what it could, and lost something
    except TensorzipError as error:
        print(f"tensorzip: error: {error}", file=sys.stderr)
        if getattr(args, "json", False):  # scripts asked for JSON: they get it for errors too
            print(json.dumps({"error": {"code": type(error).__name__, "message": str(error)}}, indent=2))
        return 1
    except MemoryError:  # a request the machine cannot meet: said in one line, nothing left behind
        message = ("out of memory; a file's declared sizes can be checked first with tensorzip info, and "
                   "tensorzip decompress streams to a file in bounded memory")
        print(f"tensorzip: error: {message}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": "MemoryError", "message": message}}, indent=2))
        return 1
    except KeyboardInterrupt:
        print(f"tensorzip: interrupted; {_what_is_left(args)}", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"tensorzip: stopped by {signal.Signals(stop.signum).name}; {_what_is_left(args)}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:  # `tensorzip info x | head`: the reader is gone, nothing to say
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except OSError as error:  # writing to standard output failed (`-o - > /dev/full`): one line, not a traceback
        where = "writing to standard output failed: " if getattr(args, "output", None) == "-" else ""
        print(f"tensorzip: error: {where}{error.strerror or error}", file=sys.stderr)
        _silence_stdout()
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _what_is_left(args: argparse.Namespace) -> str:
    """What an interrupted command leaves: files are written whole or not at all; a stream
    (``-o -``) cannot be taken back."""
    if getattr(args, "output", None) == "-":
        return "the output written to standard output so far is incomplete: discard it"
    return "no output was left behind"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
