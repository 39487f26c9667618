"""The topology is consistent, and what derives from it (tables, supervisor, status, CLI) does."""

from __future__ import annotations

import importlib
import inspect

import pytest
from click.testing import CliRunner

from driftway.app import status, supervisor
from driftway.app.cli import cli
from driftway.io.clickhouse import ROWS, SINK_TABLES
from driftway.schemas.topology import (
    COMMAND_TOPICS,
    PROCESSORS,
    REGISTRY,
    TOPIC_KEYS,
    TOPICS,
    Processor,
)

#: Written by upstream applications (through the SDK), not by a processor.
UPSTREAM = {"raw", "labels"}
#: Read outside the processors: predictions by subscribers, the registry by every version's user.
#: Read by subscribers, the registry, scoring's watcher (the learner's live updates), the live
#: status (health), and each stateful processor when it restores its state.
READ_OUTSIDE = {"predictions", *REGISTRY, "model-updates", "health",
                *(p.state for p in PROCESSORS if p.state)}
COMMANDS = set(COMMAND_TOPICS)

WRITTEN = {key for p in PROCESSORS for key in p.writes}
READ = {key for p in PROCESSORS for key in p.reads}


def test_names_are_unique() -> None:
    assert len(set(TOPIC_KEYS)) == len(TOPICS)
    assert len({p.name for p in PROCESSORS}) == len(PROCESSORS)


@pytest.mark.parametrize("processor", PROCESSORS, ids=lambda p: p.name)
def test_processors_read_and_write_declared_topics_only(processor: Processor) -> None:
    assert set(processor.reads) <= set(TOPIC_KEYS)
    assert set(processor.writes) <= set(TOPIC_KEYS)
    assert processor.reads  # a processor consumes something: its group's lag is its status


def test_every_topic_but_the_upstream_ones_is_written_by_a_processor() -> None:
    assert set(TOPIC_KEYS) - WRITTEN == UPSTREAM | COMMANDS
    assert not WRITTEN & (UPSTREAM | COMMANDS)


def test_every_topic_is_read_by_a_processor_or_outside_them() -> None:
    assert set(TOPIC_KEYS) - READ <= READ_OUTSIDE | COMMANDS
    assert READ_OUTSIDE <= set(TOPIC_KEYS) and UPSTREAM <= READ


def test_every_table_has_its_row_mapping_and_every_mapping_a_topic() -> None:
    tables = [t.table for t in TOPICS if t.table is not None]
    assert len(set(tables)) == len(tables)  # one topic per table
    assert set(tables) == set(ROWS)
    assert [(s.topic_key, s.table) for s in SINK_TABLES] == [
        (t.key, t.table) for t in TOPICS if t.table is not None]
    sink = next(p for p in PROCESSORS if p.name == "sink")
    assert set(sink.reads) == {s.topic_key for s in SINK_TABLES}


def test_supervisor_and_status_derive_from_the_topology() -> None:
    assert supervisor.PROCESSES == {p.name: list(p.command) for p in PROCESSORS}
    assert list(supervisor.PROCESSES)[-1] == "sink"  # started last, stopped last
    assert supervisor.GROUP_PROCESSORS == tuple(p.name for p in PROCESSORS if p.joins_group)
    assert status.PROCESSORS == {p.name: p.reads for p in PROCESSORS}


@pytest.mark.parametrize("processor", PROCESSORS, ids=lambda p: p.name)
def test_each_processor_runs_through_the_one_run_command(processor: Processor) -> None:
    # With the seed set, `run` does not re-execute the process (fix_hash_seed) before --help.
    done = CliRunner().invoke(cli, ["run", "--help"], prog_name="driftway",
                              env={"PYTHONHASHSEED": "0"})
    assert done.exit_code == 0, done.output
    assert processor.name in done.output and processor.command == ("run", processor.name)
    choices = next(p for p in cli.commands["run"].params if p.name == "processor").type.choices
    assert list(choices) == [p.name for p in PROCESSORS]
    main = importlib.import_module(processor.module).main
    assert list(inspect.signature(main).parameters) == ["settings", "instance"]


def test_an_unknown_processor_is_refused_with_the_known_ones() -> None:
    done = CliRunner().invoke(cli, ["run", "scorer"], prog_name="driftway",
                              env={"PYTHONHASHSEED": "0"})
    assert done.exit_code == 2 and "'scorer' is not one of" in done.output
    assert "'scoring'" in done.output and "'sink'" in done.output


def test_live_updates_are_compacted_in_small_segments_so_the_topic_stays_bounded() -> None:
    from driftway.schemas.topology import topic_specs
    from driftway.settings import Settings

    spec = {s.key: s for s in topic_specs(Settings())}["model-updates"]
    assert spec.partitions == 1 and spec.config["cleanup.policy"] == "compact"
    # Compaction cleans closed segments only: 16 MiB ones keep it near one record per model.
    assert int(spec.config["segment.bytes"]) <= 16 * 1024 * 1024
    assert int(spec.config["max.message.bytes"]) >= 16 * 1024 * 1024  # a forest's state fits
