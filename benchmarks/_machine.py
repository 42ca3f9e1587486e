"""What every benchmark records about the machine it ran on (imported by the scripts
beside it: ``python benchmarks/<name>.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else the platform's, else "unknown")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """Cores, CPU model, platform and the load average now (call it at the end)."""
    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
            "load_average_at_end": os.getloadavg()}
