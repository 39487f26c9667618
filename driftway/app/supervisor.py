"""Runs the whole local stack — broker, topics, processors, sink — and stops all of it.

Each processor is its own OS process (so scoring, feedback and the sink use different cores),
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
from collections import Counter, deque
from pathlib import Path
from typing import IO, Any

import psutil
from pydantic import SecretStr

from driftway.io.broker import LocalBroker
from driftway.io.kafka import ensure_topics, group_stable
from driftway.io.keys import with_signing_key
from driftway.io.query_endpoint import query_endpoint_file
from driftway.io.registry import ModelRegistry
from driftway.logic.backoff import backoff
from driftway.schemas import topology
from driftway.settings import Settings

log = logging.getLogger(__name__)

#: The processors whose consumer groups (`<app_id>-<name>`) must be stable before events flow.
GROUP_PROCESSORS = tuple(p.name for p in topology.PROCESSORS if p.joins_group)

#: The command that runs each process of the stack, in start order (the sink last: it stops last).
PROCESSES: dict[str, list[str]] = {p.name: list(p.command) for p in topology.PROCESSORS}


class StackError(RuntimeError):
    """A part of the stack failed; the message says which and shows its log."""


class RestartPolicy:
    """When a process that exited starts again, and when to give up on it: the back-off doubles
    from `first` to `longest` seconds with each exit inside `window` seconds, and the `limit`-th
    exit inside the window gives up (None).

    >>> policy = RestartPolicy(limit=3, window=60, first=1, longest=4)
    >>> [policy.after("scoring", t) for t in (0, 1, 2)]
    [1.0, 2.0, None]
    >>> policy.after("scoring", 200), policy.after("sink", 200)  # a quiet minute forgives
    (1.0, 1.0)
    """

    def __init__(self, limit: int = 5, window: float = 120.0, first: float = 0.5,
                 longest: float = 10.0) -> None:
        self.limit, self.window, self.first, self.longest = limit, window, first, longest
        self._exits: dict[str, deque[float]] = {}

    def after(self, name: str, now: float) -> float | None:
        """Seconds to wait before starting `name` again after its exit at `now`; None: give up."""
        exits = self._exits.setdefault(name, deque())
        exits.append(now)
        while exits and exits[0] <= now - self.window:
            exits.popleft()
        if len(exits) >= self.limit:
            return None
        return backoff(len(exits), self.first, self.longest)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that rebuilds exactly these settings in a child process, secrets and all
    (every SecretStr, wherever it is in the settings, without naming them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    env["PYTHONHASHSEED"] = "0"  # deterministic pickles: a model's version is its content hash
    data = _revealed(settings.model_dump(mode="python"))
    data["state_dir"] = str(settings.state_dir.resolve())
    for name, value in data.items():
        if value is None:
            continue
        env[f"DRIFTWAY_{name.upper()}"] = value if isinstance(value, str) else json.dumps(
            value, default=str)
    return env


def _revealed(value: Any) -> Any:
    """A dumped settings value with its secrets in clear (pydantic keeps them as SecretStr)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Stack:
    """The local Driftway stack as child processes of this one."""

    def __init__(self, settings: Settings, policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.broker: LocalBroker | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = settings.state_dir / "logs"
        self.policy = policy or RestartPolicy()
        self.restarts: Counter[str] = Counter()  # restarts so far, by process ("kafka": broker)
        self._due: dict[str, float] = {}  # exited processes: when each starts again
        self._env: dict[str, str] = {}

    def start(self) -> Stack:
        """Start everything; returns once topics exist and every process runs."""
        try:
            # The key that signs and verifies models, made once here: children get it with
            # the rest of the settings.
            self.settings = with_signing_key(self.settings)
            if self.settings.kafka.local_broker:
                self.broker = LocalBroker(self.settings).start()
            ensure_topics(self.settings)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._env = settings_env(self.settings)
            query_endpoint_file(self.settings).unlink(missing_ok=True)
            for name in PROCESSES:
                if topology.processor(name).enabled(self.settings):
                    self.spawn(name)
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or start again) one process of the stack, appending to its log.

        `name` is a process of PROCESSES, or `<process>-<n>` for another replica of it (the faust
        processors scale out by partitions: replicas share the work of one consumer group).
        """
        kind = name if name in PROCESSES else name.rsplit("-", 1)[0]
        # On the runtime, a process keeps its transactional id across restarts: its name.
        instance = ["--instance", name] if topology.processor(kind).runs_on == "runtime" else []
        logfile: IO[bytes] = (self.log_dir / f"{name}.log").open("ab")
        try:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "driftway", *PROCESSES[kind], *instance],
                env=self._env, stdout=logfile, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            logfile.close()
        return self.children[name]

    def kill(self, name: str) -> None:
        """SIGKILL one process and what it started (a crash, for tests and drills); it leaves the
        stack (``spawn`` starts it again)."""
        proc = self.children.pop(name)
        _kill_tree(proc.pid)
        proc.wait()
        if name == "sink":
            query_endpoint_file(self.settings).unlink(missing_ok=True)

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Wait until events sent now are processed without a start-up pause: the sink has
        opened ClickHouse, the learner has deployed a champion, and every grouped processor's
        consumer group is stable (joined, partitions assigned)."""
        deadline = time.monotonic() + timeout
        marker = query_endpoint_file(self.settings)
        waiting_for = ["the sink", "a deployed champion",
                       *(name for name in GROUP_PROCESSORS
                         if topology.processor(name).enabled(self.settings))]
        registry: ModelRegistry | None = None
        try:
            while time.monotonic() < deadline:
                self.check()
                if waiting_for[0] == "the sink":
                    if self.settings.embedded_clickhouse and not marker.exists():
                        time.sleep(0.1)
                        continue
                    waiting_for.pop(0)
                if waiting_for and waiting_for[0] == "a deployed champion":
                    registry = registry or ModelRegistry(self.settings, name="supervisor")
                    registry.poll(0.2)
                    if self.settings.processing.model_name not in registry.deployments:
                        continue
                    waiting_for.pop(0)
                while waiting_for and group_stable(
                        self.settings, f"{self.settings.app_id}-{waiting_for[0]}"):
                    waiting_for.pop(0)
                if not waiting_for:
                    return
                time.sleep(0.2)
        finally:
            if registry is not None:
                registry.close()
        raise StackError(f"still waiting for {waiting_for[0]} after {timeout:.0f}s; see the "
                         f"logs in {self.log_dir}")

    def check(self) -> None:
        """Raise StackError if a process of the stack has exited."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise StackError(f"the {name} process exited with code {proc.returncode}; last "
                                 f"lines of {self.log_dir / (name + '.log')}:\n{self.tail(name)}")
        if self.broker is not None and self.broker.process is not None \
                and self.broker.process.poll() is not None:
            raise StackError(f"the Kafka broker exited; see {self.broker.log_path}")

    def supervise(self, now: float | None = None) -> None:
        """Start again, with back-off, whatever process of the stack exited (the broker too);
        raise StackError when one keeps crashing (RestartPolicy), which stops the stack."""
        now = time.monotonic() if now is None else now
        for name, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[name]
                self._exited(name, f"exited with code {proc.returncode}", self.tail(name, 8),
                             now)
        if self.broker is not None and self.broker.process is not None \
                and self.broker.process.poll() is not None:
            code = self.broker.process.returncode
            self.broker.process = None
            self._exited("kafka", f"(the broker) exited with code {code}",
                         f"see {self.broker.log_path}", now)
        for name, at in list(self._due.items()):
            if at <= now:
                del self._due[name]
                self.restarts[name] += 1
                if name == "kafka":
                    assert self.broker is not None
                    self.broker.start()
                else:
                    self.spawn(name)
                log.warning("started %s again (restart %d)", name, self.restarts[name])

    def _exited(self, name: str, how: str, last: str, now: float) -> None:
        delay = self.policy.after(name, now)
        if delay is None:
            raise StackError(
                f"the {name} process {how} and keeps crashing ({self.policy.limit} exits in "
                f"{self.policy.window:.0f}s): stopping everything. Last lines of "
                f"{self.log_dir / (name + '.log')}:\n{last}")
        log.warning("the %s process %s; starting it again in %.1fs. Last lines:\n%s",
                    name, how, delay, last)
        self._due[name] = now + delay

    def tail(self, name: str, n: int = 20) -> str:
        path: Path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop processors, then the sink, then the broker; kill whatever outlives `timeout`."""
        order = [n for kind in PROCESSES for n in self.children
                 if n == kind or n.rsplit("-", 1)[0] == kind]
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
        self._due.clear()
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
