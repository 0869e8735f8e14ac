"""What a benchmark ran on, for its results file."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
from pathlib import Path


def device_description() -> str:
    """This host's accelerators and CPU (the server's too, when the suite started it)."""
    gpus = []
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        gpus = [line.strip() for line in query.stdout.splitlines() if line.strip()]
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0] if names else cpu
    return f"GPU: {', '.join(gpus) or 'none'}; CPU: {cpu} ({os.cpu_count()} cores)"


def publish_report(title: str, module: str, argv: list[str], body: str, out: Path | None) -> None:
    """A results page (title, this host, the command, `body`) printed, and written to `out`
    when given."""
    report = (
        f"# {title}\n\n"
        f"Device: {device_description()}\n\n"
        f"Command: `python -m {module} {shlex.join(argv)}`\n\n"
        f"{body}\n"
    )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    print(report)
