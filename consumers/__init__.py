"""confluent-kafka consumers: the ClickHouse sink and the prediction subscriber."""
