"""The JSON record every benchmark writes: when, the command line, and how long it took.

>>> r = start_record("demo.py")
>>> "bench/demo.py" in r["command"], len(r["timestamp"])
(True, 16)
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def start_record(script: str) -> dict[str, Any]:
    """A new record for `script` (a file in bench/), stamped now."""
    return {"timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "command": " ".join([".venv/bin/python", f"bench/{script}", *sys.argv[1:]])}


def save_record(r: dict[str, Any], out: Path, name: str, machine_key: str, started: float,
                indent: int = 2) -> Path:
    """Add the end load average (under `machine_key`) and the run time; write
    `<out>/<name>-<timestamp>.json`."""
    r[machine_key]["loadavg_end"] = list(os.getloadavg())
    r["run_seconds"] = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{r['timestamp']}.json"
    path.write_text(json.dumps(r, indent=indent) + "\n")
    return path
