"""Layer 5, the application: CLI, supervisor, live status, report, demo, query."""
