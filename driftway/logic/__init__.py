"""Layer 2, pure logic: features, models and explanations, drift statistics, the join, the
policy, learning and registry state. No I/O: no Kafka, no ClickHouse, no files."""
