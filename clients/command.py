"""One definition per command, used two ways: as a subcommand of `python -m clients`
(clients.cli) and as the entry point of its own module (`python -m clients.stream_video`, kept as
an alias). Either way the same options are parsed into the same checked options object, and a
bad value is an argparse error (exit 2, the message naming it) before anything runs.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """A command line command.

    Attributes:
        name: the subcommand's name.
        summary: one line for `python -m clients --help`.
        doc: the command's --help text (its module docstring: usage, outputs, exit codes).
        add_arguments: adds the command's options to a parser.
        options: the parsed arguments as the command's checked options; raises ValueError
            naming a value that makes no sense.
        execute: runs the command with its options; returns the exit code.
    """

    name: str
    summary: str
    doc: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    options: Callable[[argparse.Namespace], Any]
    execute: Callable[[Any], int]

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Gives `parser` this command's options, and remembers which command it parses for."""
        self.add_arguments(parser)
        parser.set_defaults(command=self, command_parser=parser)

    def parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        """A parser of this command alone (its module's own entry point)."""
        parser = argparse.ArgumentParser(
            prog=prog, description=self.doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        self.configure(parser)
        return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[Command, Any]:
    """The command `argv` names and its checked options; exits 2 with the problem named (as
    argparse does for an unknown option) when a value makes no sense."""
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command, command.options(args)
    except ValueError as error:
        args.command_parser.error(str(error))


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parses `argv` and runs the command it names; returns the command's exit code."""
    command, options = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return command.execute(options)
