"""The clients' command line: one command, a subcommand per job.

    python -m clients stream  --video in.mp4 --url HOST:8001 ...   one video, URL or webcam
    python -m clients streams --source a.mp4 --source webcam:0 ... many sources at once
    python -m clients check   --url HOST:8001                      is the server ready?

`python -m clients COMMAND --help` lists a command's options, outputs and exit codes. The older
entry points `python -m clients.stream_video` and `python -m clients.streams` run the same
commands with the same options.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from clients import check, command, stream_video, streams

COMMANDS = (stream_video.COMMAND, streams.COMMAND, check.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for each in COMMANDS:
        each.configure(
            subcommands.add_parser(
                each.name,
                help=each.summary,
                description=each.doc,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the subcommand `argv` names; returns its exit code (argparse exits 2 on bad usage)."""
    return command.run(build_parser(), argv)
