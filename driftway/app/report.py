"""An HTML report of what Driftway recorded, to look at rather than read.

One self-contained file (plotly.js inlined once, no network needed to open it): totals and the
current champion; model quality over time per version with drift events and deployments marked;
throughput; serving latency; which features drifted when. Every number comes from SQL on the
monitoring tables (all of it in `SQL` below) through `driftway.app.query`, which reads with FINAL
and goes through a running sink when the pipeline is up.

Times are wall-clock times inside Driftway (when a prediction was made, a metric or drift event
recorded, a deployment done), not the events' own timestamps; every time axis is UTC.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from driftway.app.query import query
from driftway.settings import Settings

# {since} is a UTC DateTime64 literal; {bucket} seconds per time bucket.
SQL: dict[str, str] = {
    "totals": """
        SELECT count() AS predictions,
               uniqExact(version) AS served_versions,
               min(predicted_at) AS first,
               max(predicted_at) AS last,
               quantile(0.5)(latency_ms) AS p50,
               quantile(0.99)(latency_ms) AS p99,
               (SELECT count() FROM labels WHERE ts >= {since}) AS labels,
               (SELECT count() FROM model_versions WHERE created_at >= {since}) AS versions
        FROM predictions
        WHERE predicted_at >= {since}""",
    "labelled": """
        SELECT count() AS labelled, avg(p.prediction = l.label) AS accuracy
        FROM predictions AS p INNER JOIN labels AS l USING event_id
        WHERE p.predicted_at >= {since}""",
    "dead_letters": """
        SELECT processor, count() AS n FROM dead_letters
        WHERE ts >= {since} GROUP BY processor ORDER BY n DESC, processor""",
    "feedback": """
        SELECT outcome, count() AS n FROM feedback
        WHERE ts >= {since} GROUP BY outcome ORDER BY n DESC, outcome""",
    "champions": """
        SELECT model, ts, champion, shadows, action, by FROM deployments
        ORDER BY ts DESC, _offset DESC LIMIT 1 BY model""",
    "metrics": """
        SELECT ts, model, version, metric, value, window, examples FROM metrics
        WHERE ts >= {since} ORDER BY ts, version, metric""",
    "served_accuracy": """
        SELECT toStartOfInterval(p.predicted_at, INTERVAL {bucket} SECOND) AS t,
               count() AS labelled, avg(p.prediction = l.label) AS accuracy
        FROM predictions AS p INNER JOIN labels AS l USING event_id
        WHERE p.predicted_at >= {since} GROUP BY t ORDER BY t""",
    "throughput": """
        SELECT toStartOfInterval(predicted_at, INTERVAL {bucket} SECOND) AS t, version,
               count() AS n
        FROM predictions WHERE predicted_at >= {since} GROUP BY t, version ORDER BY t, version""",
    "latency": """
        SELECT toStartOfInterval(predicted_at, INTERVAL {bucket} SECOND) AS t,
               quantile(0.5)(latency_ms) AS p50, quantile(0.95)(latency_ms) AS p95,
               quantile(0.99)(latency_ms) AS p99, count() AS n
        FROM predictions WHERE predicted_at >= {since} GROUP BY t ORDER BY t""",
    "drift": """
        SELECT ts, kind, detector, version, feature, statistic, threshold, p_value, detail
        FROM drift_events WHERE ts >= {since} ORDER BY ts""",
    "deployments": """
        SELECT ts, model, action, version, champion, shadows, reason, by FROM deployments
        WHERE ts >= {since} ORDER BY ts, _offset""",
    # The latest experiments on the history (`driftway experiment`), every contender of each.
    "experiments": """
        SELECT ts, experiment, model, candidate, role, examples, accuracy, log_loss, roc_auc,
               mae, rmse, best FROM experiments
        WHERE experiment IN (SELECT experiment FROM experiments WHERE ts >= {since}
                             GROUP BY experiment ORDER BY max(ts) DESC LIMIT 4)
        ORDER BY ts, experiment, role DESC, candidate""",
}

#: Metrics shown in the quality chart: the first two present, in this order.
QUALITY_METRICS = ("accuracy", "log_loss", "roc_auc", "mae", "rmse")
#: Time buckets to choose from: the smallest that gives at most MAX_BUCKETS over the time span.
BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MAX_BUCKETS = 120
#: Above this many versions their legend entries are left out (hover names them).
MAX_LEGEND_VERSIONS = 12
#: Drift events of one kind beyond this many get no vertical line (the lane still shows them).
MAX_DRIFT_LINES = 60
DRIFT_COLOURS = {"concept": "#d62728", "data": "#ff7f0e", "prediction": "#9467bd"}
DEPLOY_COLOURS = {"init": "#7f7f7f", "update": "#b0b0b0", "deploy": "#2ca02c",
                  "promote": "#2ca02c", "rollback": "#8c564b", "shadow": "#17becf",
                  "unshadow": "#17becf"}
#: Deployment actions drawn as vertical lines; auto-updates are too frequent and only get a tick.
NOTABLE_ACTIONS = ("init", "deploy", "promote", "rollback", "shadow", "unshadow")
TIME_AXIS = {"title": "time (UTC)", "type": "date", "hoverformat": "%H:%M:%S.%L"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def short(version: str | None) -> str:
    """A model version as people read it: its first 12 hex digits.

    >>> short("3f2a9c" + "0" * 58), short(None)
    ('3f2a9c000000', '')
    """
    return (version or "")[:12]


def bucket_seconds(span_seconds: float) -> int:
    """Seconds per time bucket for a time span: at most MAX_BUCKETS buckets.

    >>> bucket_seconds(17.4), bucket_seconds(600), bucket_seconds(86400)
    (1, 5, 900)
    """
    return next((b for b in BUCKETS if span_seconds / b <= MAX_BUCKETS), BUCKETS[-1])


def utc(value: Any) -> datetime:
    """A time from a query (a datetime, or its ISO text via the sink's endpoint) as naive UTC,
    which is how plotly draws it on a UTC axis."""
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def gapped(rows: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    """Time-bucket rows with an empty row where buckets are missing, so that lines break there
    rather than bridge a time without predictions.

    >>> rows = [{"t": "2026-01-01T00:00:00", "n": 1}, {"t": "2026-01-01T00:00:05", "n": 2}]
    >>> [r["n"] for r in gapped(rows, 1)]
    [1, None, 2]
    """
    out: list[dict[str, Any]] = []
    for row in rows:
        if out and (utc(row["t"]) - utc(out[-1]["t"])).total_seconds() > step:
            after = utc(out[-1]["t"]) + timedelta(seconds=step)
            out.append(dict.fromkeys(row) | {"t": after})
        out.append(row)
    return out


@dataclass(frozen=True)
class ReportData:
    """What the report shows, as read from the monitoring tables."""

    generated_at: datetime
    since: datetime | None
    bucket_s: int
    totals: dict[str, Any]
    dead_letters: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    champions: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    served_accuracy: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    latency: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    deployments: list[dict[str, Any]]
    experiments: list[dict[str, Any]]

    def summary(self) -> str:
        """One line: the totals and the champion."""
        t = self.totals
        accuracy = (f", accuracy {t['accuracy']:.3f}" if t.get("accuracy") is not None else "")
        champions = ", ".join(f"{c['model']} {short(c['champion'])}" for c in self.champions)
        return (f"{t['predictions']:,} predictions ({t['labelled']:,} labelled{accuracy}), "
                f"{t['versions']:,} versions, {len(self.drift):,} drift events, "
                f"{len(self.deployments):,} deployments, "
                f"{sum(d['n'] for d in self.dead_letters):,} dead letters; "
                f"champion {champions or 'none yet'}")


def gather(settings: Settings, since: datetime | None = None) -> ReportData:
    """Read everything the report shows."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    start = since.astimezone(UTC) if since else datetime(1970, 1, 1, tzinfo=UTC)
    params: dict[str, Any] = {
        "since": f"toDateTime64('{start:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')", "bucket": 1}

    def rows(name: str) -> list[dict[str, Any]]:
        return query(settings, SQL[name].format(**params)).records()

    totals = rows("totals")[0] | rows("labelled")[0]
    if not totals["labelled"]:
        totals["accuracy"] = None  # avg() of no rows is nan
    if totals["predictions"]:
        span = (utc(totals["last"]) - utc(totals["first"])).total_seconds()
        params["bucket"] = bucket_seconds(span)
    return ReportData(
        generated_at=datetime.now(UTC), since=since, bucket_s=int(params["bucket"]),
        totals=totals, dead_letters=rows("dead_letters"), feedback=rows("feedback"),
        champions=rows("champions"), metrics=rows("metrics"),
        served_accuracy=rows("served_accuracy"), throughput=rows("throughput"),
        latency=rows("latency"), drift=rows("drift"), deployments=rows("deployments"),
        experiments=rows("experiments"))


def build_report(settings: Settings, since: datetime | None = None) -> str:
    """The report as one self-contained HTML page (events since `since`, else all)."""
    return render(gather(settings, since))


def write_report(settings: Settings, out: Path, since: datetime | None = None) -> ReportData:
    """Write the report to `out`; returns what it shows (its `summary()` is one line)."""
    data = gather(settings, since)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return data


# --- charts -------------------------------------------------------------------------------------

def version_colours(data: ReportData) -> dict[str, str]:
    """One colour per version, in order of first appearance, shared by every chart."""
    palette = qualitative.Plotly + qualitative.D3[1::2]
    seen = dict.fromkeys(r["version"] for r in sorted(
        data.metrics + data.throughput, key=lambda r: utc(r.get("ts") or r.get("t"))))
    return {v: palette[i % len(palette)] for i, v in enumerate(seen)}


def time_range(data: ReportData) -> list[datetime] | None:
    """The span of everything shown, padded a little: every chart gets the same time axis."""
    times = [utc(r["ts"]) for r in data.metrics + data.drift + data.deployments]
    times += [utc(r["t"]) for r in data.throughput]
    if not times:
        return None
    first, last = min(times), max(times)
    if data.throughput:
        last = max(last, max(utc(r["t"]) for r in data.throughput) + timedelta(
            seconds=data.bucket_s))
    pad = max((last - first) * 0.02, timedelta(milliseconds=500))
    return [first - pad, last + pad]


def quality_figure(data: ReportData, colours: dict[str, str]) -> go.Figure | None:
    """Metrics per version over time under a lane of deployments and drift events."""
    present = {r["metric"] for r in data.metrics}
    shown = [m for m in QUALITY_METRICS if m in present][:2] or sorted(present)[:2]
    if not shown and not data.drift and not data.deployments:
        return None
    fig = make_subplots(rows=1 + len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        row_heights=[0.2] + [0.8 / len(shown)] * len(shown) if shown else None)
    _event_lane(fig, data)
    legend = len(colours) <= MAX_LEGEND_VERSIONS
    for row, metric in enumerate(shown, start=2):
        points = [r for r in data.metrics if r["metric"] == metric]
        for version in dict.fromkeys(r["version"] for r in points):
            mine = [r for r in points if r["version"] == version]
            fig.add_trace(go.Scatter(
                x=[utc(r["ts"]) for r in mine], y=[r["value"] for r in mine],
                mode="lines+markers", name=short(version), legendgroup=short(version),
                marker={"size": 8},
                showlegend=legend and row == 2, line={"color": colours.get(version)},
                customdata=[[r["window"], r["examples"]] for r in mine],
                hovertemplate=f"version {short(version)}<br>{metric} %{{y:.3f}}<br>"
                              "window %{customdata[0]}, after %{customdata[1]} examples"
                              "<extra></extra>"), row=row, col=1)
        if metric == "accuracy" and data.served_accuracy:
            served = gapped(data.served_accuracy, data.bucket_s)
            fig.add_trace(go.Scatter(
                x=[utc(r["t"]) for r in served], y=[r["accuracy"] for r in served],
                mode="lines", name="served accuracy",
                line={"color": "black", "width": 1.5, "shape": "hv"},
                customdata=[r["labelled"] for r in served],
                hovertemplate="served accuracy %{y:.3f} over %{customdata} labelled "
                              "predictions<extra></extra>"), row=row, col=1)
        fig.update_yaxes(title_text=metric.replace("_", " "), row=row, col=1)
    _event_lines(fig, data)
    fig.update_xaxes(**TIME_AXIS, row=1 + len(shown), col=1)
    return _styled(fig, 160 + 260 * len(shown), time_range(data))


def _event_lane(fig: go.Figure, data: ReportData) -> None:
    """Row 1: one marker per deployment and drift event, with the details on hover."""
    for action in dict.fromkeys(d["action"] for d in data.deployments):
        mine = [d for d in data.deployments if d["action"] == action]
        fig.add_trace(go.Scatter(
            x=[utc(d["ts"]) for d in mine], y=["deployment"] * len(mine), mode="markers",
            name=f"deployment: {action}", marker={
                "symbol": "triangle-down", "color": DEPLOY_COLOURS.get(action, "#2ca02c"),
                "size": 9 if action in NOTABLE_ACTIONS else 6},
            hovertext=[_deployment_hover(d) for d in mine], hoverinfo="text"), row=1, col=1)
    for kind in ("concept", "prediction", "data"):
        mine = [d for d in data.drift if d["kind"] == kind]
        if mine:
            fig.add_trace(go.Scatter(
                x=[utc(d["ts"]) for d in mine], y=[f"{kind} drift"] * len(mine),
                mode="markers", name=f"{kind} drift",
                marker={"symbol": "diamond", "color": DRIFT_COLOURS[kind], "size": 9},
                hovertext=[_drift_hover(d) for d in mine], hoverinfo="text"), row=1, col=1)
    lanes = ["data drift", "prediction drift", "concept drift", "deployment"]
    fig.update_yaxes(categoryorder="array", categoryarray=lanes, row=1, col=1)


def _event_lines(fig: go.Figure, data: ReportData) -> None:
    """Vertical lines through every row: notable deployments solid, drift events dotted."""
    for d in data.deployments:
        if d["action"] in NOTABLE_ACTIONS:
            fig.add_vline(x=utc(d["ts"]), line={"color": DEPLOY_COLOURS[d["action"]],
                                                "width": 1.5}, opacity=0.8)
    for kind, colour in DRIFT_COLOURS.items():
        times = sorted({utc(d["ts"]) for d in data.drift if d["kind"] == kind})
        if kind == "concept" or len(times) <= MAX_DRIFT_LINES:
            for t in times:
                fig.add_vline(x=t, line={"color": colour, "width": 1, "dash": "dot"},
                              opacity=0.7)


def _deployment_hover(d: dict[str, Any]) -> str:
    shadows = ", ".join(short(s) for s in d["shadows"]) or "none"
    return (f"<b>deployment: {html.escape(d['action'])}</b> {short(d['version'])}<br>"
            f"champion {short(d['champion'])}, shadows {shadows}<br>"
            f"by {html.escape(d['by'])}: {_wrapped(d['reason'])}<br>{utc(d['ts']):%H:%M:%S.%f} UTC")


def _drift_hover(d: dict[str, Any]) -> str:
    where = f"feature {html.escape(d['feature'])}<br>" if d["feature"] else ""
    p = f", p={d['p_value']:.2g}" if d["p_value"] is not None else ""
    return (f"<b>{d['kind']} drift</b> ({html.escape(d['detector'])}), version "
            f"{short(d['version'])}<br>{where}statistic {d['statistic']:.3g} "
            f"(threshold {d['threshold']:.3g}{p})<br>{_wrapped(d['detail'])}<br>"
            f"{utc(d['ts']):%H:%M:%S.%f} UTC")


def _wrapped(text: str, width: int = 70) -> str:
    return "<br>".join(html.escape(line) for line in textwrap.wrap(text, width)[:4])


def throughput_figure(data: ReportData, colours: dict[str, str]) -> go.Figure | None:
    """Predictions per second in each time bucket, stacked by the version that served them."""
    if not data.throughput:
        return None
    fig = go.Figure()
    step = data.bucket_s
    legend = len(colours) <= MAX_LEGEND_VERSIONS
    for version in dict.fromkeys(r["version"] for r in data.throughput):
        mine = [r for r in data.throughput if r["version"] == version]
        fig.add_trace(go.Bar(
            x=[utc(r["t"]) for r in mine], y=[r["n"] / step for r in mine],
            name=short(version), showlegend=legend,
            marker={"color": colours.get(version), "line": {"width": 0}},
            width=step * 1000, offset=0, customdata=[r["n"] for r in mine],
            hovertemplate=f"version {short(version)}<br>%{{y:.1f}} predictions/s "
                          f"(%{{customdata}} in {step} s)<extra></extra>"))
    fig.update_layout(barmode="stack", bargap=0)
    fig.update_xaxes(**TIME_AXIS)
    fig.update_yaxes(title_text=f"predictions/s ({step} s buckets)")
    return _styled(fig, 340, time_range(data))


def latency_figure(data: ReportData) -> go.Figure | None:
    """Serving latency percentiles in each time bucket."""
    if not data.latency:
        return None
    fig = go.Figure()
    rows = gapped(data.latency, data.bucket_s)
    for name, colour in (("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
        fig.add_trace(go.Scatter(
            x=[utc(r["t"]) for r in rows], y=[r[name] for r in rows],
            mode="lines+markers", name=name, line={"color": colour},
            customdata=[r["n"] for r in rows],
            hovertemplate=f"{name} %{{y:.1f}} ms of %{{customdata}} predictions<extra></extra>"))
    p50 = sorted(r["p50"] for r in data.latency)[len(data.latency) // 2]
    wide = p50 > 0 and max(r["p99"] for r in data.latency) > 10 * p50
    fig.update_xaxes(**TIME_AXIS)
    fig.update_yaxes(title_text="ms inside scoring" + (" (log scale)" if wide else ""),
                     type="log" if wide else "linear")
    if wide:  # 1-2-5 ticks read better than plotly's bare "2" and "5" between decades
        ticks = [m * 10.0**e for e in range(-2, 6) for m in (1, 2, 5)]
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return _styled(fig, 340, time_range(data))


def features_figure(data: ReportData) -> go.Figure | None:
    """One row per feature (and the prediction score): a marker where its test alarmed."""
    events = [d for d in data.drift if d["kind"] in ("data", "prediction")]
    if not events:
        return None
    fig = go.Figure()
    for kind in ("data", "prediction"):
        mine = [d for d in events if d["kind"] == kind]
        if not mine:
            continue
        fig.add_trace(go.Scatter(
            x=[utc(d["ts"]) for d in mine],
            y=[_feature_row(d) for d in mine],
            mode="markers", name=f"{kind} drift",
            marker={"color": DRIFT_COLOURS[kind], "symbol": "diamond", "line": {"width": 0},
                    "size": [_size(d) for d in mine]},
            hovertext=[_drift_hover(d) for d in mine], hoverinfo="text"))
    rows = len({_feature_row(d) for d in events})
    fig.update_xaxes(**TIME_AXIS)
    fig.update_yaxes(type="category", automargin=True)
    return _styled(fig, 180 + 32 * rows, time_range(data))


def experiments_figure(data: ReportData) -> go.Figure | None:
    """One panel per metric: a bar per contender of each recent experiment, the champion's
    served figures beside the candidates replayed over the same events."""
    rows = data.experiments
    names = [m for m in QUALITY_METRICS if any(r[m] is not None for r in rows)]
    if not names:
        return None
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.08)
    runs = list(dict.fromkeys(r["experiment"] for r in rows))
    palette = qualitative.Plotly
    for n, run in enumerate(runs):
        mine = [r for r in rows if r["experiment"] == run]
        first = mine[0]
        label = f"{run} ({first['model']}, {first['examples']:,} examples)"
        for col, metric in enumerate(names, start=1):
            fig.add_trace(go.Bar(
                x=[_contender(r) for r in mine], y=[r[metric] for r in mine], name=label,
                legendgroup=run, showlegend=col == 1, marker_color=palette[n % len(palette)],
                marker_pattern_shape=["/" if r["role"] == "served" else "" for r in mine],
                hovertext=[f"{label}<br>{r['candidate']}: {metric} {r[metric]:.4f}"
                           if r[metric] is not None else "" for r in mine],
                hoverinfo="text"), row=1, col=col)
    fig.update_layout(barmode="group")
    fig.update_xaxes(automargin=True, tickangle=-30)
    fig = _styled(fig, 420, None)
    fig.update_layout(margin={"l": 60, "r": 200, "t": 40, "b": 120, "autoexpand": True})
    return fig


def _contender(r: dict[str, Any]) -> str:
    name = "served (champion)" if r["role"] == "served" else r["candidate"]
    name = name if len(name) <= 28 else name[:27] + "…"
    return name + (" ★" if r["best"] else "")


def _feature_row(d: dict[str, Any]) -> str:
    """The feature's row label, short enough for the margin (hover has the full name)."""
    feature = d["feature"] or "(unnamed)"
    label = feature if d["kind"] == "data" else f"prediction: {feature}"
    return label if len(label) <= 28 else label[:27] + "…"


def _size(d: dict[str, Any]) -> float:
    """Marker size: how far the statistic went past its threshold."""
    ratio = d["statistic"] / d["threshold"] if d["threshold"] else 1.0
    return max(8.0, min(22.0, 6.0 + 3.0 * ratio))


def _styled(fig: go.Figure, height: int, span: list[datetime] | None) -> go.Figure:
    fig.update_layout(template="plotly_white", height=height, hovermode="closest",
                      # Fixed margins hold the axis labels and the legend, so the time axes of
                      # all charts line up.
                      margin={"l": 190, "r": 200, "t": 20, "b": 50, "autoexpand": False},
                      showlegend=True,
                      legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1},
                      font={"family": "system-ui, sans-serif", "size": 12})
    if span:
        fig.update_xaxes(range=span)
    return fig


# --- page ---------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 24px;
       color: #222; }
h1 { margin: 0 0 4px; } h2 { margin: 32px 0 2px; } .sub { color: #666; margin: 0 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 12px;
         margin-top: 16px; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; }
.card .label { color: #666; font-size: 13px; } .card .value { font-size: 22px; font-weight: 600; }
.card .value code { font-size: 20px; } .card .value .detail { font-weight: normal; }
.card .detail { color: #444; font-size: 13px; margin-top: 4px; }
.no-data { border: 1px dashed #bbb; border-radius: 8px; padding: 28px; color: #666;
           text-align: center; background: #fafafa; }
code { font-size: 13px; }
"""

CHARTS = (
    ("quality", "Model quality over time",
     "Prequential metrics per model version (one point per evaluation window) and, in black, "
     "the accuracy of what was served, from the labels. The top lane marks deployments and "
     "drift events (hover for details); lines cross every row: solid for deployments other "
     "than auto-updates, dotted for drift.",
     "no metrics, drift events or deployments recorded yet."),
    ("throughput", "Throughput",
     "Predictions per second, stacked by the version that served them (hover a bar for its "
     "version); a gap is a time with no predictions stored.",
     "no predictions stored yet."),
    ("latency", "Serving latency",
     "Percentiles of the time inside the scoring processor (batch wait included).",
     "no predictions stored yet."),
    ("features", "Which features drifted when",
     "Data drift alarms per feature, and prediction drift; a bigger marker went further past "
     "its threshold.",
     "no data or prediction drift detected yet."),
    ("experiments", "Experiments on the history",
     "The latest runs of `driftway experiment`: each candidate replayed through the stored "
     "examples with the label delay they had, beside the champion's served figures over the "
     "same events (hatched); ★ marks the best of a run.",
     "no experiments run yet (`driftway experiment --model SPEC --model SPEC`)."),
)


def render(data: ReportData) -> str:
    """The page: header, then each chart or its "no data yet" panel; plotly.js inlined once."""
    colours = version_colours(data)
    figures = {"quality": quality_figure(data, colours),
               "throughput": throughput_figure(data, colours),
               "latency": latency_figure(data), "features": features_figure(data),
               "experiments": experiments_figure(data)}
    sections, library_included = [], False
    for key, title, subtitle, empty in CHARTS:
        fig = figures[key]
        if fig is None:
            body = f'<div class="no-data"><strong>No data yet</strong>: {empty}</div>'
        else:
            body = fig.to_html(full_html=False, include_plotlyjs=not library_included,
                               div_id=f"chart-{key}", config=PLOT_CONFIG)
            library_included = True
        sections.append(f'<section id="{key}"><h2>{title}</h2><p class="sub">{subtitle}</p>'
                        f"{body}</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Driftway report</title><style>{CSS}</style></head><body>"
            f"{_header(data)}{''.join(sections)}</body></html>\n")


def _header(data: ReportData) -> str:
    t = data.totals
    if t["predictions"]:
        span = (f"predictions from {utc(t['first']):%Y-%m-%d %H:%M:%S} "
                f"to {utc(t['last']):%Y-%m-%d %H:%M:%S} UTC")
    else:
        span = "no predictions yet"
    since = f" (since {data.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)" if data.since else ""
    labelled = (f"{t['labelled']:,} labelled, served accuracy {t['accuracy']:.3f}"
                if t["labelled"] else "none labelled yet")
    latency = (f"p50 {t['p50']:.1f} ms, p99 {t['p99']:.1f} ms" if t["predictions"] else "")
    kinds = _counts(d["kind"] for d in data.drift)
    actions = _counts(d["action"] for d in data.deployments)
    cards = [
        ("predictions", f"{t['predictions']:,}", f"{labelled}; {latency}".strip("; ")),
        ("labels", f"{t['labels']:,}", ""),
        ("dead letters", f"{sum(d['n'] for d in data.dead_letters):,}",
         _listing((d["processor"], d["n"]) for d in data.dead_letters) or "none"),
        ("model versions", f"{t['versions']:,} published",
         f"{t['served_versions']:,} of them served predictions"),
        ("current champion", _champions(data.champions), ""),
        ("drift events", f"{len(data.drift):,}", _listing(kinds.items()) or "none"),
        ("deployments", f"{len(data.deployments):,}", _listing(actions.items()) or "none"),
        ("feedback outcomes", f"{sum(f['n'] for f in data.feedback):,}",
         _listing((f["outcome"], f["n"]) for f in data.feedback)
         or "none recorded"),
    ]
    html_cards = "".join(
        f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
        f'<div class="detail">{detail}</div></div>' for label, value, detail in cards)
    return (f"<header><h1>Driftway report</h1><p class=\"sub\">{span}{since}; generated "
            f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC; time buckets of {data.bucket_s} s</p>"
            f'<div class="cards">{html_cards}</div></header>')


def _champions(champions: list[dict[str, Any]]) -> str:
    if not champions:
        return "none yet"
    return "<br>".join(
        f"<code>{short(c['champion'])}</code>"
        f"<div class=\"detail\">{html.escape(c['model'])}; shadows "
        f"{', '.join(short(s) for s in c['shadows']) or 'none'}; last {html.escape(c['action'])} "
        f"by {html.escape(c['by'])} at {utc(c['ts']):%H:%M:%S} UTC</div>" for c in champions)


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _listing(pairs: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{html.escape(str(k))} {n:,}" for k, n in pairs)
