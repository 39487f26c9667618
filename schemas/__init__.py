"""Driftway's schemas: wire records (events.py), topic settings (topics.py), ClickHouse DDL (sql/)."""
