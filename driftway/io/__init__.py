"""Layer 3, I/O: Kafka clients, the local broker, the processor plumbing, ClickHouse."""
