"""The ``defectlens`` command line: thin adapters over the library.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a function ``(args) -> int``. Heavy imports happen inside those functions so that
``defectlens --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from defectlens import __version__
from defectlens.errors import DefectlensError

# Subcommand modules, in the order they appear in --help.
_COMMANDS = ("data", "train", "evaluate", "export", "predict", "bench", "demo")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defectlens",
        description="Visual inspection for manufacturing: import, train, evaluate, explain, deploy.",
    )
    parser.add_argument("--version", action="version", version=f"defectlens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"defectlens.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"defectlens.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DefectlensError as exc:
        print(f"defectlens: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("defectlens: interrupted", file=sys.stderr)
        return 130
