"""Runs the whole local stack — broker, topics, processors, sink — and stops all of it.

Each processor is its own OS process (so scoring, features and the sink use different cores),
started in its own session so that Ctrl-C reaches only the supervisor, which then stops them in
order: processors first, the sink once it has written what it holds, the broker last.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil

from consumers.sink import query_endpoint_file
from deploy.kafka_local import LocalBroker
from driftway.kafka import ensure_topics
from driftway.settings import Settings

log = logging.getLogger(__name__)

PROCESSES: dict[str, list[str]] = {
    "features": ["worker", "features"],
    "scoring": ["worker", "scoring"],
    "sink": ["sink"],
}


class StackError(RuntimeError):
    """A part of the stack failed; the message says which and shows its log."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that rebuilds exactly these settings in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    data = settings.model_dump(mode="json")
    if settings.clickhouse_dsn is not None:
        data["clickhouse_dsn"] = settings.clickhouse_dsn.get_secret_value()
    data["state_dir"] = str(settings.state_dir.resolve())
    for name, value in data.items():
        if value is None:
            continue
        env[f"DRIFTWAY_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


class Stack:
    """The local Driftway stack as child processes of this one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: LocalBroker | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = settings.state_dir / "logs"

    def start(self) -> Stack:
        """Start everything; returns once topics exist and every process runs."""
        try:
            if self.settings.kafka.local_broker:
                self.broker = LocalBroker(self.settings).start()
            ensure_topics(self.settings)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            env = settings_env(self.settings)
            query_endpoint_file(self.settings).unlink(missing_ok=True)
            for name, args in PROCESSES.items():
                logfile: IO[bytes] = (self.log_dir / f"{name}.log").open("ab")
                self.children[name] = subprocess.Popen(
                    [sys.executable, "-m", "driftway.cli", *args],
                    env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
                logfile.close()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Wait until the sink has opened ClickHouse (and, if embedded, its query endpoint)."""
        deadline = time.monotonic() + timeout
        marker = query_endpoint_file(self.settings)
        while time.monotonic() < deadline:
            self.check()
            if not self.settings.embedded_clickhouse or marker.exists():
                return
            time.sleep(0.1)
        raise StackError(f"the sink did not open ClickHouse in {timeout:.0f}s; "
                         f"see {self.log_dir / 'sink.log'}")

    def check(self) -> None:
        """Raise StackError if a process of the stack has exited."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise StackError(f"the {name} process exited with code {proc.returncode}; last "
                                 f"lines of {self.log_dir / (name + '.log')}:\n{self.tail(name)}")
        if self.broker is not None and self.broker.process is not None \
                and self.broker.process.poll() is not None:
            raise StackError(f"the Kafka broker exited; see {self.broker.log_path}")

    def tail(self, name: str, n: int = 20) -> str:
        path: Path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop processors, then the sink, then the broker; kill whatever outlives `timeout`."""
        order = [n for n in ("features", "scoring", "sink") if n in self.children]
        for group in (order[:-1], order[-1:]):
            procs = [self.children[n] for n in group]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("pid %d did not stop in %.0fs; killing it", proc.pid, timeout)
                    _kill_tree(proc.pid)
                    proc.wait()
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for proc in [*parent.children(recursive=True), parent]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
