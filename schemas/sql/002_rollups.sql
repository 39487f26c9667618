-- Views and per-minute rollups over the monitoring tables. {db} is the database.
-- The rollups are materialized views: ClickHouse aggregates each inserted block as it arrives,
-- so dashboards read a few rows per minute instead of every prediction. They count what the sink
-- inserted: a record a processor re-sent after a crash (a second row that FINAL hides in the base
-- table) is counted twice here; exact figures come from the base tables with FINAL.

-- When each labelled example was served and labelled (older databases: added in place).
ALTER TABLE {db}.training ADD COLUMN IF NOT EXISTS predicted_at Nullable(DateTime64(6, 'UTC')) AFTER outputs;
ALTER TABLE {db}.training ADD COLUMN IF NOT EXISTS labelled_at Nullable(DateTime64(6, 'UTC')) AFTER predicted_at;

-- Every version's answer for every labelled event, one row per version (champion and shadows):
-- the prequential evaluations, in SQL.
CREATE VIEW IF NOT EXISTS {db}.evaluations AS
SELECT
    event_id,
    model,
    kv.1 AS version,
    kv.1 = training.version AS champion,
    predicted_at AS ts,
    label,
    if(JSONType(kv.2, 'prediction') = 'String', JSONExtractString(kv.2, 'prediction'),
       JSONExtractRaw(kv.2, 'prediction')) AS prediction,
    prediction = label AS correct,
    JSONExtract(kv.2, 'score', 'Nullable(Float64)') AS score,
    if(JSONHas(kv.2, 'proba'), -log(greatest(JSONExtractFloat(kv.2, 'proba', label), 1e-15)),
       NULL) AS log_loss
FROM {db}.training
ARRAY JOIN JSONExtractKeysAndValuesRaw(outputs) AS kv;

-- Serving, per minute and version: events, latency quantiles, score distribution.
CREATE TABLE IF NOT EXISTS {db}.predictions_minute
(
    minute  DateTime('UTC'),
    model   LowCardinality(String),
    version String,
    events  AggregateFunction(count),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    score   AggregateFunction(quantiles(0.1, 0.25, 0.5, 0.75, 0.9), Float64),
    score_avg AggregateFunction(avg, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (model, version, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.predictions_minute_mv TO {db}.predictions_minute AS
SELECT
    toStartOfMinute(predicted_at) AS minute,
    model,
    version,
    countState() AS events,
    quantilesState(0.5, 0.95, 0.99)(predictions.latency_ms) AS latency,
    quantilesState(0.1, 0.25, 0.5, 0.75, 0.9)(ifNull(predictions.score, nan)) AS score,
    avgState(ifNull(predictions.score, nan)) AS score_avg
FROM {db}.predictions
GROUP BY minute, model, version;

-- Quality, per minute (of serving) and champion version: labelled events, accuracy, log loss
-- (binary: the probability the champion gave the true class).
CREATE TABLE IF NOT EXISTS {db}.quality_minute
(
    minute   DateTime('UTC'),
    model    LowCardinality(String),
    version  String,
    labelled AggregateFunction(count),
    accuracy AggregateFunction(avg, Float64),
    log_loss AggregateFunction(avg, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (model, version, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.quality_minute_mv TO {db}.quality_minute AS
SELECT
    toStartOfMinute(ifNull(predicted_at, inserted_at)) AS minute,
    model,
    version,
    countState() AS labelled,
    avgState(toFloat64(label = served)) AS accuracy,
    avgState(if(JSONHas(outputs, version, 'proba'),
                -log(greatest(JSONExtractFloat(outputs, version, 'proba', label), 1e-15)),
                nan)) AS log_loss
FROM {db}.training
GROUP BY minute, model, version;

-- The two rollups side by side, finalized: what a dashboard or a person reads.
CREATE VIEW IF NOT EXISTS {db}.rollup_minute AS
SELECT
    p.minute AS minute,
    p.model AS model,
    p.version AS version,
    p.events AS events,
    p.latency[1] AS latency_p50_ms,
    p.latency[2] AS latency_p95_ms,
    p.latency[3] AS latency_p99_ms,
    p.score AS score_quantiles,
    p.score_avg AS score_avg,
    q.labelled AS labelled,
    q.accuracy AS accuracy,
    q.log_loss AS log_loss
FROM
(
    SELECT minute, model, version, countMerge(events) AS events,
           quantilesMerge(0.5, 0.95, 0.99)(latency) AS latency,
           quantilesMerge(0.1, 0.25, 0.5, 0.75, 0.9)(score) AS score,
           avgMerge(score_avg) AS score_avg
    FROM {db}.predictions_minute
    GROUP BY minute, model, version
) AS p
LEFT JOIN
(
    SELECT minute, model, version, countMerge(labelled) AS labelled,
           avgMerge(accuracy) AS accuracy, avgMerge(log_loss) AS log_loss
    FROM {db}.quality_minute
    GROUP BY minute, model, version
) AS q USING (minute, model, version);
