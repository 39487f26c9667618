-- Driftway monitoring tables. {db} is the database (setting clickhouse_database).
-- Every sink-fed table keeps the Kafka coordinates of its source record (_topic, _partition,
-- _offset): on start the sink resumes after the highest offset already stored, and the
-- ReplacingMergeTree keys make a record written twice (a crash between insert and commit, or a
-- processor re-run) count once in queries with FINAL (which `driftway query` always uses).
-- non_replicated_deduplication_window makes a retried insert of the same block a no-op (every
-- block differs from every other by its offsets, so only a retry can repeat one).

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.predictions
(
    event_id      String,
    entity_id     String,
    ts            DateTime64(3, 'UTC'),
    model         LowCardinality(String),
    version       LowCardinality(String),
    prediction    String,
    score         Nullable(Float64),
    shadow_scores Map(String, Float64),
    explanation   String COMMENT 'JSON list of {feature, value, contribution}',
    latency_ms    Float64 COMMENT 'serving latency inside the scoring processor',
    received_at   DateTime64(6, 'UTC') COMMENT 'raw event entered Driftway',
    predicted_at  DateTime64(6, 'UTC'),
    state_version   String DEFAULT '' COMMENT 'the registry version the serving state descends from',
    trained_from    UInt64 DEFAULT 0 COMMENT 'training offset where its learning since state_version began',
    trained_through UInt64 DEFAULT 0 COMMENT 'training offset up to which (exclusive) it had learned',
    features        Map(String, Float64) COMMENT 'what the prediction was computed from',
    _topic        LowCardinality(String),
    _partition    UInt32,
    _offset       UInt64,
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, version, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE {db}.predictions
    ADD COLUMN IF NOT EXISTS state_version String DEFAULT '' AFTER predicted_at,
    ADD COLUMN IF NOT EXISTS trained_from UInt64 DEFAULT 0 AFTER state_version,
    ADD COLUMN IF NOT EXISTS trained_through UInt64 DEFAULT 0 AFTER trained_from,
    ADD COLUMN IF NOT EXISTS features Map(String, Float64) AFTER trained_through;

CREATE TABLE IF NOT EXISTS {db}.labels
(
    event_id    String,
    label       String,
    ts          DateTime64(3, 'UTC') COMMENT 'label time, else when it reached Kafka',
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    ts               DateTime64(3, 'UTC'),
    processor        LowCardinality(String),
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64,
    key              Nullable(String),
    error            String,
    payload          String COMMENT 'the original bytes',
    _topic           LowCardinality(String),
    _partition       UInt32,
    _offset          UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, processor)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.model_versions
(
    model           LowCardinality(String),
    version         String,
    parent          Nullable(String),
    created_at      DateTime64(3, 'UTC'),
    reason          String DEFAULT '' COMMENT 'why it was published',
    training_topic  String DEFAULT '',
    training_start  Nullable(UInt64) COMMENT 'first training offset learned since the parent',
    training_end    Nullable(UInt64) COMMENT 'offset after the last one learned: [start, end)',
    examples_seen   UInt64,
    feature_set     LowCardinality(String),
    hyperparameters String COMMENT 'JSON',
    metrics         String DEFAULT '{}' COMMENT 'JSON: metric name to value',
    libraries       String DEFAULT '{}' COMMENT 'JSON: library to version it was pickled with',
    artifact_size   UInt64 DEFAULT 0,
    signature       String DEFAULT '' COMMENT 'HMAC-SHA256 of the artifact',
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, version)
SETTINGS non_replicated_deduplication_window = 1000;

-- A database created before these columns existed gets them in place.
ALTER TABLE {db}.model_versions
    ADD COLUMN IF NOT EXISTS reason String DEFAULT '' AFTER created_at,
    ADD COLUMN IF NOT EXISTS training_topic String DEFAULT '' AFTER reason,
    ADD COLUMN IF NOT EXISTS training_start Nullable(UInt64) AFTER training_topic,
    ADD COLUMN IF NOT EXISTS training_end Nullable(UInt64) AFTER training_start,
    ADD COLUMN IF NOT EXISTS metrics String DEFAULT '{}' AFTER hyperparameters,
    ADD COLUMN IF NOT EXISTS libraries String DEFAULT '{}' AFTER metrics,
    ADD COLUMN IF NOT EXISTS artifact_size UInt64 DEFAULT 0 AFTER libraries,
    ADD COLUMN IF NOT EXISTS signature String DEFAULT '' AFTER artifact_size;

-- Training examples only: the publish requests that share their topic have no row.
CREATE TABLE IF NOT EXISTS {db}.training
(
    event_id    String,
    model       LowCardinality(String),
    version     LowCardinality(String) COMMENT 'the champion that served the event',
    label       String,
    served      String COMMENT 'the champion prediction',
    score       Nullable(Float64),
    outputs     String DEFAULT '{}' COMMENT 'JSON: version to {prediction, score, proba}',
    features    Map(String, Float64) COMMENT 'what the learner learns from (driftway explain rebuilds from it)',
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (_partition, _offset)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE {db}.training ADD COLUMN IF NOT EXISTS outputs String DEFAULT '{}' AFTER score;
ALTER TABLE {db}.training ADD COLUMN IF NOT EXISTS features Map(String, Float64) AFTER outputs;

-- Every deployment record: the history of champions and shadows, and why each changed.
CREATE TABLE IF NOT EXISTS {db}.deployments
(
    ts          DateTime64(3, 'UTC'),
    model       LowCardinality(String),
    version     String COMMENT 'the version the action is about',
    champion    String,
    shadows     Array(String),
    action      LowCardinality(String),
    previous    Nullable(String) COMMENT 'the champion before the action',
    reason      String,
    by          LowCardinality(String),
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, ts, _offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- Prequential metrics: one value per version, metric and examples seen, so a replay counts once.
CREATE TABLE IF NOT EXISTS {db}.metrics
(
    ts          DateTime64(3, 'UTC'),
    model       LowCardinality(String),
    version     String,
    metric      LowCardinality(String),
    value       Float64,
    window      UInt32 COMMENT 'labelled examples in the sliding window',
    examples    UInt64 COMMENT 'labelled examples the version had been evaluated on',
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, version, metric, examples)
SETTINGS non_replicated_deduplication_window = 1000;

-- Served events and labels that found no partner in time in the feedback join.
CREATE TABLE IF NOT EXISTS {db}.feedback
(
    ts          DateTime64(3, 'UTC'),
    event_id    String,
    outcome     LowCardinality(String) COMMENT 'unlabelled, late_label, orphan_label, duplicate_label',
    model       Nullable(String),
    version     Nullable(String),
    waited_s    Float64,
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (outcome, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Drift: data drift per feature and prediction drift (on what scoring served), concept drift on
-- each version's prequential errors (in the learner). One row per alert.
CREATE TABLE IF NOT EXISTS {db}.drift_events
(
    ts           DateTime64(3, 'UTC'),
    kind         LowCardinality(String) COMMENT 'data, prediction or concept',
    detector     LowCardinality(String),
    model        Nullable(String),
    version      Nullable(String) COMMENT 'the champion at detection (concept: the version whose errors drifted)',
    feature      Nullable(String),
    statistic    Float64,
    threshold    Float64,
    p_value      Nullable(Float64),
    event_id     Nullable(String) COMMENT 'the event at detection',
    source       Nullable(String) COMMENT 'topic the offsets refer to',
    source_partition Nullable(UInt32),
    source_offset    Nullable(UInt64) COMMENT 'offset at detection',
    change_point Nullable(UInt64) COMMENT 'estimated offset where the change began',
    detail       String,
    _topic       LowCardinality(String),
    _partition   UInt32,
    _offset      UInt64,
    inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (_partition, _offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- What moved (sequential drift); older rows get the defaults.
ALTER TABLE {db}.drift_events
    ADD COLUMN IF NOT EXISTS direction Nullable(String) AFTER detail,
    ADD COLUMN IF NOT EXISTS before_mean Nullable(Float64) AFTER direction,
    ADD COLUMN IF NOT EXISTS before_sd Nullable(Float64) AFTER before_mean,
    ADD COLUMN IF NOT EXISTS after_mean Nullable(Float64) AFTER before_sd,
    ADD COLUMN IF NOT EXISTS after_sd Nullable(Float64) AFTER after_mean,
    ADD COLUMN IF NOT EXISTS shares_before Map(String, Float64) AFTER after_sd,
    ADD COLUMN IF NOT EXISTS shares_after Map(String, Float64) AFTER shares_before,
    ADD COLUMN IF NOT EXISTS moved_features Array(String) AFTER shares_after,
    ADD COLUMN IF NOT EXISTS moved_shifts Array(Float64) AFTER moved_features;
