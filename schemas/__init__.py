"""Driftway's schemas: wire records (events.py), topics (topics.py), ClickHouse DDL (sql/)."""
