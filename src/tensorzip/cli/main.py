"""The ``tensorzip`` command: a thin layer over the public API.

Every subcommand prints a human summary (or ``--json`` for scripts), shows a
progress bar on a terminal, and turns a TensorzipError into one line on stderr
with exit status 1. Each command group registers itself from its own module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import TensorzipError
from . import analyze as cli_analyze
from . import checkpoints
from . import embeddings as cli_embeddings


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
            sub.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
        return sub

    def add(name: str, handler: Callable[[argparse.Namespace], dict[str, Any]], help_text: str,
            threads: bool = True) -> argparse.ArgumentParser:
        return common(commands.add_parser(name, help=help_text, description=help_text), handler, threads)

    checkpoints.add_commands(commands, add)
    cli_embeddings.add_commands(commands, common)
    cli_analyze.add_command(commands, common)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except TensorzipError as error:
        print(f"tensorzip: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tensorzip: interrupted; no output was left behind", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
