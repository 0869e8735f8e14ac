"""Is the server ready to stream? Asks Triton at --url whether it is ready and which models it has
loaded, prints one line per model and one verdict.

    python -m clients check [--url localhost:8001] [--wait-s S]

The ensemble rfdetr_seg and its three stages must be loaded and ready; any other model in the
repository is listed too. --wait-s waits that long for a server that is starting (retrying with
doubling pauses, as the streaming commands do); 0, the default, checks once.

Exit codes:
  0    ready: the ensemble and its stages are loaded and ready
  1    the server answers, but the ensemble or a stage is missing or not ready (the reason
       Triton gives, e.g. a model that failed to load, is printed)
  2    no server answers at --url (within --wait-s), or a bad option
"""

from __future__ import annotations

import argparse
import math
import threading
from dataclasses import dataclass

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients import command
from clients.reconnect import ServerUnavailable, wait_until_ready
from clients.runner import add_url_argument
from clients.server_stats import STAGES
from clients.signals import StopOnSignals

EXIT_READY, EXIT_NOT_READY, EXIT_UNREACHABLE = 0, 1, 2
CALL_TIMEOUT_S = 5.0  # one call to a server that answers at all takes milliseconds


@dataclass(frozen=True)
class CheckOptions:
    """Where the server is and how long to wait for it.

    Raises:
        ValueError: wait_s is negative or not finite.
    """

    url: str
    wait_s: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.wait_s) or self.wait_s < 0:
            raise ValueError(f"wait_s must be a finite number of seconds >= 0, got {self.wait_s}")


@dataclass(frozen=True)
class ModelState:
    """One model as the server's repository index lists it."""

    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING...; MISSING: not in the repository at all
    reason: str = ""


@dataclass(frozen=True)
class Report:
    """What `check_server` found: the verdict's exit code and the lines saying why."""

    exit_code: int
    lines: list[str]


def check_server(url: str, wait_s: float = 0.0, stop: threading.Event | None = None) -> Report:
    """Whether the server at `url` can serve the ensemble now (or within wait_s), and the state
    of every model it has. Never raises for a server that is down or not ready: the report says.
    """
    with grpcclient.InferenceServerClient(url) as client:
        try:
            wait_until_ready(client, wait_s, stop)
        except ServerUnavailable:
            pass  # what is wrong is read below: unreachable, or which model is not ready
        try:
            metadata = client.get_server_metadata(client_timeout=CALL_TIMEOUT_S)
            index = client.get_model_repository_index(client_timeout=CALL_TIMEOUT_S)
        except InferenceServerException as error:
            waited = f" (waited {wait_s:g} s)" if wait_s else ""
            return Report(EXIT_UNREACHABLE, [f"no Triton server answers at {url}{waited}: {error}"])
    models = {
        m.name: ModelState(m.name, m.version or "-", m.state or "UNKNOWN", m.reason)
        for m in index.models
    }
    for name in STAGES:
        models.setdefault(name, ModelState(name, "-", "MISSING", "not in the model repository"))
    lines = [f"Triton {metadata.version} at {url}"]
    width = max(len(name) for name in models)
    for model in sorted(models.values(), key=lambda m: (m.name not in STAGES, m.name)):
        reason = f"  {model.reason}" if model.reason else ""
        lines.append(f"  {model.name:<{width}}  {model.version:>3}  {model.state}{reason}")
    not_ready = [name for name in STAGES if models[name].state != "READY"]
    if not_ready:
        lines.append(f"not ready: {', '.join(not_ready)} (see above)")
        return Report(EXIT_NOT_READY, lines)
    lines.append(f"ready: {STAGES[0]} and its stages are loaded")
    return Report(EXIT_READY, lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_url_argument(parser)
    parser.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        help="how long to wait for a server that is starting (0: check once)",
    )


def options_from_args(args: argparse.Namespace) -> CheckOptions:
    return CheckOptions(url=args.url, wait_s=args.wait_s)


def execute(options: CheckOptions) -> int:
    """Prints the report; returns its exit code. Ctrl-C ends a wait (exit 2: not known ready)."""
    with StopOnSignals() as signals:
        report = check_server(options.url, options.wait_s, signals.event)
    print("\n".join(report.lines))
    return report.exit_code


COMMAND = command.Command(
    name="check",
    summary="is the server ready, and which models are loaded",
    doc=__doc__,
    add_arguments=add_arguments,
    options=options_from_args,
    execute=execute,
)

