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
    _topic        LowCardinality(String),
    _partition    UInt32,
    _offset       UInt64,
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, version, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

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
    examples_seen   UInt64,
    feature_set     LowCardinality(String),
    hyperparameters String COMMENT 'JSON',
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, version)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.training
(
    event_id    String,
    model       LowCardinality(String),
    version     LowCardinality(String),
    label       String,
    served      String,
    score       Nullable(Float64),
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (_partition, _offset)
SETTINGS non_replicated_deduplication_window = 1000;
