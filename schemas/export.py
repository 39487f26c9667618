"""Generates the JSON Schema files in schemas/json/ from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from driftway.schemas.events import json_schema
from driftway.schemas.topology import TOPIC_RECORDS

JSON_DIR = Path(__file__).resolve().parent / "json"


def rendered_schemas() -> dict[str, str]:
    """File name → file text, for every topic's wire format."""
    return {
        f"{key}.schema.json": json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n"
        for key, model in TOPIC_RECORDS.items()
    }


def write_json_schemas(out: Path | None = None) -> list[Path]:
    """Write every schema file; returns their paths."""
    directory = out or JSON_DIR
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered_schemas().items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths
