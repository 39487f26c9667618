"""alerts: drift alarms → one alert per model and window, on faust-streaming.

A low-rate agent, and the job faust's model serves well: a tumbling windowed table of counts per
model (a faust table, backed by faust's own changelog topic) over the drift topic, whose records
come a few per hour. When a model's alarms within
``alerts.window_seconds`` reach ``alerts.threshold``, the alert is logged and, when
``alerts.webhook_url`` is set, POSTed there as JSON (retried three times; a webhook that keeps
failing is logged, the agent goes on). At least once: after a crash an alert may come twice.

The per-event data plane is not here: it runs on ``driftway.io.runtime``, where faust's
per-message machinery would cost more than the work (bench/passthrough.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from datetime import timedelta
from typing import Any

import faust

from driftway.io.agents import make_app
from driftway.logic.alerts import alert_of
from driftway.schemas.events import DriftEvent, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


def post(url: str, alert: dict[str, Any], attempts: int = 3) -> bool:
    """POST one alert as JSON; True once the webhook answered 2xx."""
    body = json.dumps(alert).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if 200 <= response.status < 300:
                    return True
        except OSError as exc:
            log.warning("alert webhook failed (attempt %d of %d): %s", attempt + 1, attempts,
                        exc)
        time.sleep(0.5 * 2**attempt)
    return False


def make_alerts_app(settings: Settings) -> faust.App:
    """The faust app with its agent and windowed table."""
    cfg = settings.alerts
    app = make_app(settings, "alerts")
    drift = app.topic(settings.topic("drift"), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw", partitions=1)
    window = timedelta(seconds=cfg.window_seconds)
    counts = app.Table(
        "drift-alarms", default=int, partitions=1, key_type=str, value_type=int,
    ).tumbling(window, expires=2 * window)
    url = cfg.webhook_url.get_secret_value() if cfg.webhook_url is not None else None

    @app.agent(drift)
    async def alerts(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                event = DriftEvent.model_validate_json(value)
            except Exception as exc:  # the sink stores it as a dead letter; here: skip it
                log.warning("alerts: skipped a record that is not a drift event: %s",
                            failure_reason(exc))
                continue
            model = event.model or "(no model)"
            counts[model] += 1
            alert = alert_of(event, counts[model].current(), cfg.threshold, cfg.window_seconds)
            if alert is None:
                continue
            log.warning("ALERT: %s", alert["text"])
            if url is not None:
                await asyncio.get_running_loop().run_in_executor(None, post, url, alert)

    return app


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the alerts agent in the foreground until SIGTERM or Ctrl-C."""
    app = make_alerts_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
