-- What `driftway experiment` found: one row per contender of a run, the candidates replayed
-- through the stored joined examples and the champion's served answers over the same events.
CREATE TABLE IF NOT EXISTS {db}.experiments
(
    ts             DateTime64(3, 'UTC'),
    experiment     String COMMENT 'the id of the run, shared by its contenders',
    model          LowCardinality(String) COMMENT 'the model line whose examples were replayed',
    candidate      String COMMENT 'the model spec, or served for what the champion answered',
    role           LowCardinality(String) COMMENT 'candidate or served',
    examples       UInt64,
    first_served   Nullable(DateTime64(6, 'UTC')) COMMENT 'when the first example was served',
    last_served    Nullable(DateTime64(6, 'UTC')) COMMENT 'when the last example was served',
    source         LowCardinality(String) COMMENT 'table or topic: where the examples came from',
    accuracy       Nullable(Float64),
    log_loss       Nullable(Float64),
    roc_auc        Nullable(Float64),
    mae            Nullable(Float64),
    rmse           Nullable(Float64),
    examples_per_s Nullable(Float64) COMMENT 'examples replayed per second',
    best           Bool COMMENT 'the winner by the metric of the run',
    shadow         String DEFAULT '' COMMENT 'the version deployed from it as a shadow (shadow-best)',
    _topic         LowCardinality(String),
    _partition     UInt32,
    _offset        UInt64,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (experiment, candidate, role)
SETTINGS non_replicated_deduplication_window = 1000;
