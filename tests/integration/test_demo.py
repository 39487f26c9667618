"""`driftway demo`, run twice in one directory as a new user would: each run reports its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from driftway.io.broker import free_port

pytestmark = pytest.mark.integration


def run_demo(cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "driftway", "demo", "--events", "1500",
                           "--rate", "0", "--label-delay", "100"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_second_demo_reports_its_own_events_from_a_fresh_state(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    env |= {"DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "DRIFTWAY_KAFKA__CONTROLLER_PORT": str(free_port()), "COLUMNS": "200"}
    first, second = run_demo(tmp_path, env), run_demo(tmp_path, env)
    assert "the previous demo's was removed" not in first
    assert "the previous demo's was removed" in second
    for out in (first, second):
        assert "stored 1500 predictions, 1 dead letters" in out, out
        # librdkafka speaks through Python logging at warning and above: no raw lines.
        assert not re.search(r"^%\d\|", out, re.MULTILINE) and "rdkafka#" not in out, out
        # 750 labelled predictions before the change, each counted once, from this run only.
        assert re.search(r"before the change\s*│\s*750\b", out), out
        # Beside what was served, the same model learning in process on the same events.
        assert "learning in process" in out, out
        reference = re.search(r"before the change\s*│\s*750\s*│\s*([\d.]+)\s*│\s*([\d.]+)",
                              out)
        assert reference and 0.5 < float(reference[2]) <= 1.0, out

    runs = re.findall(r"demo (run\d{8}T\d{6}): fresh state", first + second)
    assert len(runs) == 2 and runs[0] != runs[1]
    # What the second run left is its own alone: its events, and a version chain that began
    # again at version zero (none of the first run's models).
    query = subprocess.run(
        [sys.executable, "-m", "driftway", "--state-dir", str(tmp_path / ".driftway" / "demo"),
         "query", "--format", "csv",
         f"SELECT (SELECT countIf(NOT startsWith(event_id, '{runs[1]}-')) FROM predictions), "
         "(SELECT count() FROM predictions), (SELECT countIf(parent IS NULL) FROM "
         "model_versions WHERE reason LIKE 'initial%')"],
        env=env, capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[1] == "0,1500,1"
