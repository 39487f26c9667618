"""The alerts agent (faust-streaming) on the real broker: drift alarms counted per model in a
tumbling window, one alert POSTed to the webhook when a model's count reaches the threshold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from driftway.app.supervisor import settings_env
from driftway.io.broker import free_port
from driftway.io.kafka import ensure_topics, group_stable, make_producer
from driftway.schemas.events import DriftEvent
from driftway.settings import AlertSettings, Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def webhook() -> tuple[HTTPServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def drift_event(model: str, feature: str) -> bytes:
    return DriftEvent(ts=datetime.now(UTC), kind="data", detector="ks", model=model,
                      version="v" * 64, feature=feature, statistic=0.5,
                      threshold=0.2).to_bytes()


def test_a_model_with_threshold_alarms_in_its_window_raises_one_alert(
        stack_settings: Settings) -> None:
    server, received = webhook()
    settings = stack_settings.model_copy(update={"alerts": AlertSettings(
        enabled=True, threshold=3, window_seconds=600,
        webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook")})
    ensure_topics(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / "alerts.log"
    agent = subprocess.Popen([sys.executable, "-m", "driftway", "run", "alerts"],
                             env=settings_env(settings), stdout=log.open("ab"),
                             stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: agent.poll() is None and group_stable(settings,
                                                               f"{settings.app_id}-alerts"),
                 bool, 120, "the alerts agent to join its group")
        producer = make_producer(settings)
        for i in range(4):
            producer.produce(settings.topic("drift"), key=b"m", value=drift_event("m", f"f{i}"))
        producer.produce(settings.topic("drift"), key=b"other", value=b"not a drift event")
        for _ in range(2):
            producer.produce(settings.topic("drift"), key=b"other",
                             value=drift_event("other", "x"))
        assert producer.flush(30) == 0
        wait_for(lambda: list(received), bool, 90, f"an alert ({log.read_text()[-2000:]})")
        time.sleep(3)  # the fourth alarm of m, and other's two, must not alert
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        finally:
            if agent.poll() is None:
                agent.kill()
        server.shutdown()
    [alert] = received
    assert (alert["model"], alert["alarms"], alert["window_seconds"]) == ("m", 3, 600)
    assert alert["last"]["feature"] == "f2" and "3 drift alarms on model m" in alert["text"]
    text = log.read_text()
    assert "skipped a record that is not a drift event: invalid DriftEvent" in text
    assert "Error in recovery" not in text and "unknown topic" not in text, text[-3000:]
