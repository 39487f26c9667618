"""The project's own Kafka: Apache Kafka 3.9 in KRaft mode, from Maven Central jars, on loopback.

One node is broker and controller. Its data lives under ``<state_dir>/kafka``; the first start
formats that directory, later starts reuse it. ``LocalBroker`` is a context manager that starts the
JVM, waits until the broker answers metadata requests, and stops it on exit.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from driftway.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
#: deploy/kafka of a checkout: the jars' recipe (pom.xml), and where `make install` puts them.
CHECKOUT_KAFKA = Path(__file__).resolve().parents[2] / "deploy" / "kafka"

#: The broker's own logging: warnings, and the line that says it started.
LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


class LauncherError(RuntimeError):
    """The broker cannot start; the message says what to do."""


def jars_present(libs_dir: Path) -> bool:
    """True when the broker's jars are already in libs_dir."""
    return (libs_dir / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def libs_dir(settings: Settings) -> Path:
    """Where the broker's jars are: DRIFTWAY_KAFKA_LIBS_DIR, or the checkout's deploy/kafka/libs."""
    return settings.kafka_libs_dir or CHECKOUT_KAFKA / "libs"


def ensure_jars(libs_dir: Path, recipe: Path = CHECKOUT_KAFKA / "pom.xml") -> Path:
    """Fetch the broker's jars with Maven unless they are there already (quick the second time)."""
    if jars_present(libs_dir):
        return libs_dir
    if not recipe.is_file():
        raise LauncherError(
            f"the Kafka {KAFKA_VERSION} jars are not in {libs_dir} and there is no recipe to fetch "
            f"them ({recipe}: Driftway runs from an installed wheel, not a checkout): set "
            "DRIFTWAY_KAFKA_LIBS_DIR to a directory holding them (`make install` in a checkout "
            "fills deploy/kafka/libs), or use an existing Kafka with --external-kafka."
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LauncherError(
            "Maven (`mvn`) is not on PATH and the Kafka jars are not in "
            f"{libs_dir}: install Maven (e.g. `apt-get install maven`) and run `make install`."
        )
    libs_dir.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(recipe), "dependency:copy-dependencies",
           f"-Dkafka.libs.dir={libs_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not jars_present(libs_dir):
        raise LauncherError(
            f"fetching the Kafka jars with Maven failed ({' '.join(cmd)}):\n"
            f"{(done.stdout + done.stderr)[-2000:]}"
        )
    return libs_dir


def find_java() -> str:
    """Path of `java`, or a LauncherError that says how to get it."""
    java = shutil.which("java")
    if java is None:
        raise LauncherError(
            "`java` is not on PATH: the local Kafka broker needs Java 17 "
            "(e.g. `apt-get install openjdk-17-jre-headless`), or point "
            "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS at an existing cluster with "
            "DRIFTWAY_KAFKA__LOCAL_BROKER=false."
        )
    return java


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port nobody listens on right now (for tests and side-by-side brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """server.properties of a single-node KRaft broker+controller on loopback."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        # Topics are created by Driftway with their settings; a typo must not make a new one.
        "auto.create.topics.enable=false",
        # One node: the defaults of 3 would leave groups and transactions unavailable.
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=4",
        "num.recovery.threads.per.data.dir=1",
        "log.retention.hours=168",
        "",
    ])


class LocalBroker:
    """A local single-node Kafka broker process, started and stopped with the context."""

    def __init__(self, settings: Settings, ready_timeout: float = 90.0) -> None:
        self.settings = settings
        self.port = settings.kafka.broker_port
        self.controller_port = settings.kafka.controller_port
        self.home = (settings.state_dir / "kafka").resolve()
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    def _java_cmd(self, java: str, *args: str) -> list[str]:
        libs = ensure_jars(libs_dir(self.settings))
        log4j = self.home / "log4j.properties"
        log4j.write_text(LOG4J)
        # C1 only: the JIT's optimising tier (C2) spent more CPU than the broker's work in the
        # first minutes of every fresh local broker (166 against 140 µs an event in
        # bench/pipeline.py's labelled run), and the broker ran no slower without it.
        return [java, "-XX:TieredStopAtLevel=1", f"-Dlog4j.configuration=file:{log4j}",
                "-cp", f"{libs}/*", *args]

    def _format(self, java: str, props: Path) -> None:
        data_dir = self.home / "data"
        if (data_dir / "meta.properties").is_file():
            return  # formatted by an earlier start: reuse
        cluster_id = "-"
        while cluster_id.startswith("-"):  # StorageTool would read it as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = self._java_cmd(java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                             "-c", str(props), "--ignore-formatted")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise LauncherError(f"formatting {data_dir} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> LocalBroker:
        """Start the broker and wait until it serves metadata."""
        java = find_java()
        for port, what in ((self.port, "broker"), (self.controller_port, "controller")):
            if port_in_use(port):
                raise LauncherError(
                    f"port {port} ({what}) is already in use: stop whatever listens there "
                    "(another `driftway up`?) or choose free ports with "
                    "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:PORT and "
                    "DRIFTWAY_KAFKA__CONTROLLER_PORT=PORT."
                )
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(server_properties(self.home / "data", self.port, self.controller_port))
        self._format(java, props)
        heap = self.settings.kafka.broker_heap
        cmd = self._java_cmd(java, "-Xms128m", f"-Xmx{heap}", "-XX:+UseG1GC",
                             "-XX:MaxDirectMemorySize=256m", "kafka.Kafka", str(props))
        logfile = self.log_path.open("ab")
        # Own session: Ctrl-C in a terminal reaches the supervisor, which stops us in order.
        self.process = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        logfile.close()
        self._wait_ready()
        log.info("Kafka %s ready on 127.0.0.1:%d", KAFKA_VERSION, self.port)
        return self

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        admin = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LauncherError(
                    f"the Kafka broker exited with code {self.process.returncode}; "
                    f"last lines of {self.log_path}:\n{self._tail()}"
                )
            if admin is None and port_in_use(self.port):
                # Only once the port is open: librdkafka logs every refused connection.
                admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"})
            if admin is not None:
                with contextlib.suppress(Exception):
                    if admin.list_topics(timeout=2).brokers:
                        return
            time.sleep(0.2)
        self.stop()
        raise LauncherError(f"the Kafka broker was not ready in {self.ready_timeout:.0f}s; "
                            f"see {self.log_path}:\n{self._tail()}")

    def _tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker (a controlled shutdown), then SIGKILL if it hangs."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("broker did not stop in %.0fs; killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
