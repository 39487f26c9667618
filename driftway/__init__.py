"""Driftway: event-driven streaming MLOps on Kafka, River and ClickHouse."""

__version__ = "0.1.0"
