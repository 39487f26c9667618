"""Hostile raw events and labels, as hypothesis strategies of the bytes a producer could send.

Malformed JSON, bytes that are not UTF-8, lone surrogates, oversized texts and records, deep
nesting, wrong types, extra and missing fields, NaN and Infinity literals, numbers at and past
every edge (the epoch-millisecond range, the largest float, 256/257-character ids, 1024/1025-
character texts, 1000/1001 fields), timestamps that are almost RFC 3339 — mixed with valid
records, so that the edges are crossed from both sides. Used by the unit agreement test
(tests/unit/schemas/test_fuzz.py) and the broker-backed fuzz test
(tests/integration/test_fuzz.py); `standard_accepts` is what a producer trusting the published
JSON Schema concludes about a record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftway.schemas.events import MAX_EPOCH_MS, MAX_RECORD_BYTES, MIN_EPOCH_MS
from driftway.schemas.export import JSON_DIR

MAX_FLOAT = sys.float_info.max
MISSING = object()  # a field left out


def validator(file: str) -> Draft202012Validator:
    """A Draft 2020-12 validator of a published schema, checking the formats it knows."""
    schema = json.loads((JSON_DIR / file).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 has no NaN or Infinity


def _no_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_no_lone_surrogate(k) and _no_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_lone_surrogate(v) for v in value)
    return True


def standard_accepts(value: bytes, check: Draft202012Validator,
                     max_record_bytes: int = MAX_RECORD_BYTES) -> bool:
    """True when `value` is UTF-8 JSON text (RFC 8259; I-JSON: no lone surrogates, no NaN or
    Infinity) whose document the published schema validates, and within the record size (the
    one limit JSON Schema cannot state: the schema's description says so)."""
    if len(value) > max_record_bytes:
        return False
    try:
        document = json.loads(value.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    try:
        valid = check.is_valid(document)
    except RecursionError:
        return False
    return valid and _no_lone_surrogate(document)  # valid: flat, so the walk is short


# -- the parts of a record: each field mostly valid, else hostile ----------------------------

LENGTHS = (0, 1, 255, 256, 257, 1023, 1024, 1025)
#: One character each, of 1 to 4 UTF-8 bytes, escapes, controls, a non-ASCII digit.
CHARS = ("x", "é", "€", "😀", '"', "\\", "\n", "\u0000", "\u2028", "٣")
SURROGATES = ("\ud800", "\udfff")
_letters = st.characters(blacklist_categories=("Cs",))  # any character but a lone surrogate


def _repeated(lengths: tuple[int, ...], chars: tuple[str, ...] = CHARS) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(chars), st.sampled_from(lengths))


def _mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
            ) -> st.SearchStrategy[Any]:
    """Valid about six times in seven (hypothesis leans to a draw's low end: valid)."""
    return st.integers(0, 99).flatmap(lambda i: hostile if i >= 85 else valid)


wrong_types = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(),
                        st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
lone_surrogates = st.builds(lambda a, s, b: a + s + b, st.text(_letters, max_size=3),
                            st.sampled_from(SURROGATES), st.text(_letters, max_size=3))

ids = _mostly(st.one_of(st.text(_letters, min_size=1, max_size=20),
                        _repeated((1, 255, 256), ("i", "é", "😀", '"'))),
              st.one_of(_repeated((0, 257, 1024)), lone_surrogates, wrong_types,
                        st.just(MISSING)))

texts = st.one_of(st.text(_letters, max_size=12), _repeated((0, 1, 255, 1023, 1024)))
long_texts = st.one_of(_repeated((1025, 2000)), lone_surrogates)
EDGE_NUMBERS = (0, -0.0, 1, -1, 5e-324, MAX_FLOAT, -MAX_FLOAT, int(MAX_FLOAT),
                -int(MAX_FLOAT), 2**63, -(2**63) - 1, 1e300)
BAD_NUMBERS = (int(MAX_FLOAT) + 1, -int(MAX_FLOAT) - 1, 10**400, float("nan"), float("inf"),
               float("-inf"))
numbers = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(EDGE_NUMBERS))
bad_numbers = st.sampled_from(BAD_NUMBERS)
scalars = st.one_of(st.booleans(), st.none(), numbers, texts)
bad_scalars = st.one_of(bad_numbers, long_texts, st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))

EDGE_MILLIS = (MIN_EPOCH_MS, MAX_EPOCH_MS, MIN_EPOCH_MS + 0.5, MAX_EPOCH_MS - 0.5,
               float(MAX_EPOCH_MS), 0, 1, -0.0, 1767225600000)
BAD_MILLIS = (MIN_EPOCH_MS - 1, MAX_EPOCH_MS + 1, MIN_EPOCH_MS - 0.5, MAX_EPOCH_MS + 0.5,
              1e18, -1e300, 10**20, float("nan"), float("inf"))
OFFSETS = ("Z", "z", "+00:00", "-00:00", "+05:30", "-23:59", "+23:59")
BAD_OFFSETS = ("+24:00", "-01:60", "", "+0100", "+01", " Z", "UTC")
FRACTIONS = ("", ".1", ".123456", ".123456789", "." + "7" * 100)
BAD_FRACTIONS = (".", ",5")


@st.composite
def iso_texts(draw: st.DrawFn, valid: bool = True) -> str:
    """RFC 3339 date-times (valid), or texts one mistake away from one."""
    moment = draw(st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)))
    parts = {"year": f"{moment.year:04d}", "month": f"{moment.month:02d}",
             "day": f"{moment.day:02d}", "T": draw(st.sampled_from("Tt")),
             "hour": f"{moment.hour:02d}", "minute": f"{moment.minute:02d}",
             "second": f":{moment.second:02d}", "fraction": draw(st.sampled_from(FRACTIONS)),
             "offset": draw(st.sampled_from(OFFSETS))}
    if draw(st.booleans()):  # a day at the calendar's edges
        parts["month"], parts["day"] = draw(st.sampled_from(
            (("02", "28"), ("01", "31"), ("04", "30"), ("12", "31"))))
        if draw(st.booleans()):
            parts["year"] = draw(st.sampled_from(("2024", "2000", "0004", "0400", "1600")))
            parts["month"], parts["day"] = "02", "29"
    if not valid:
        wrong = draw(st.sampled_from((
            ("year", ("0000", "10000", "٢٠٢٦", "26")), ("month", ("00", "13", "1")),
            ("day", ("00", "32", "1")), ("T", (" ", "_", "")), ("hour", ("24", "9")),
            ("minute", ("60", "5")), ("second", (":60", "", ":5")),
            ("fraction", BAD_FRACTIONS), ("offset", BAD_OFFSETS),
            ("calendar", ("2026-02-29", "1900-02-29", "2100-02-29", "2026-04-31",
                          "2026-02-30")))))
        name, choices = wrong
        if name == "calendar":
            parts["year"], parts["month"], parts["day"] = draw(st.sampled_from(choices)).split("-")
        else:
            parts[name] = draw(st.sampled_from(choices))
    text = (f"{parts['year']}-{parts['month']}-{parts['day']}{parts['T']}{parts['hour']}:"
            f"{parts['minute']}{parts['second']}{parts['fraction']}{parts['offset']}")
    if not valid and draw(st.integers(0, 3)) == 0:
        text = draw(st.sampled_from((text + "\n", " " + text, text[:10], text + "x")))
    return text


timestamps = _mostly(
    st.one_of(st.integers(MIN_EPOCH_MS, MAX_EPOCH_MS),
              st.floats(float(MIN_EPOCH_MS), float(MAX_EPOCH_MS)),
              st.sampled_from(EDGE_MILLIS), iso_texts()),
    st.one_of(iso_texts(valid=False), st.sampled_from(BAD_MILLIS),
              st.sampled_from(("yesterday", "", "noon", "1700000000", "1767225600000",
                               "2026-01-01", "2026-01-01T00:00:00")),
              st.booleans(), st.none(), st.lists(st.integers(), max_size=1), st.just(MISSING)))

names = st.one_of(st.text(_letters, max_size=8), _repeated((0, 1024)))
bad_names = st.one_of(_repeated((1025,)), lone_surrogates)


@st.composite
def _hostile_data(draw: st.DrawFn) -> Any:
    good = draw(st.dictionaries(names, scalars, max_size=3))
    kind = draw(st.integers(0, 19))
    if kind <= 5:
        return {**good, draw(bad_names): draw(scalars)}
    if kind <= 16:
        return {**good, draw(names): draw(bad_scalars)}
    if kind == 19:
        return {f"f{i}": i for i in range(1001)}
    return draw(st.one_of(st.none(), st.integers(), st.text(max_size=3),
                          st.lists(st.integers(), max_size=2)))


data = _mostly(
    st.integers(0, 99).flatmap(lambda i: st.one_of(
        st.dictionaries(names, scalars, max_size=4), st.just(MISSING)) if i < 97 else
        st.builds(lambda n: {f"f{i}": i % 3 for i in range(n)}, st.sampled_from((999, 1000)))),
    _hostile_data())
labels = _mostly(st.one_of(st.booleans(), numbers, texts),
                 st.one_of(bad_numbers, long_texts, st.none(), st.lists(st.booleans(),
                                                                        max_size=1),
                           st.just(MISSING)))
versions = _mostly(st.sampled_from((MISSING, 1, 1.0)), st.sampled_from((True, "1", 2, 0, None)))


@st.composite
def _record(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    record = {name: value for name, value in ((n, draw(s)) for n, s in fields.items())
              if value is not MISSING}
    if draw(st.integers(0, 99)) >= 95:  # a field the schema does not have
        record[draw(st.sampled_from(("extra", "data ", "Event_id", "")))] = draw(scalars)
    return record


raw_documents = _record({"event_id": ids, "entity_id": ids, "ts": timestamps, "data": data,
                         "schema_version": versions})
label_documents = _record({"event_id": ids, "label": labels,
                           "ts": st.one_of(timestamps, st.none()),
                           "schema_version": versions})


# -- documents into bytes, and bytes broken --------------------------------------------------


def _mutations(draw: st.DrawFn, value: bytes) -> bytes:
    kind = draw(st.integers(0, 11))
    at = draw(st.integers(0, len(value)))
    if kind == 0:
        return value[:at]  # cut short
    if kind == 1:
        junk = draw(st.sampled_from((b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80",
                                     b"\xf4\x90\x80\x80", b"\x00", b'"', b"}", b",", b"\\")))
        return value[:at] + junk + value[at:]  # bytes no UTF-8 JSON holds, or broken syntax
    if kind == 2:
        depth = draw(st.sampled_from((2, 100, 1_000, 20_000)))
        return b"[" * depth + value + b"]" * depth
    if kind == 3:
        deep = b'[' * 3_000 + b']' * 3_000
        return value.replace(b"{", b'{"data": {"x": ' + deep + b"}, ", 1)
    if kind == 4:
        before = draw(st.sampled_from((b"\xef\xbb\xbf", b" \t\r\n", b"\x0c", b"")))
        return before + value + draw(st.sampled_from((b"", b" ", b"\n", b"x", b"{}", b"\x00")))
    if kind == 5:
        return draw(st.sampled_from((b"", b"null", b"[]", b"{}", b"1", b'"x"', b"NaN",
                                     b"{" * 5, b'{"event_id": }')))
    if kind == 6:  # a field written twice: the last one counts, for both parsers
        field = draw(st.sampled_from((b'"event_id": 7', b'"ts": "yesterday"', b'"data": {}',
                                      b'"label": null', b'"event_id": "dup"')))
        return value.replace(b"{", b"{" + field + b", ", 1) if value.startswith(b"{") \
            else value
    if kind == 7:
        return value.replace(b"1", b"1" * draw(st.sampled_from((2, 400))), 1)
    if kind == 8:
        return value.replace(b'"', b"'", 1)
    return value


@st.composite
def encoded(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A document as bytes: JSON as json.dumps writes it (NaN and Infinity literals included,
    escaped or raw UTF-8, lone surrogates kept), sometimes broken afterwards."""
    document = draw(documents)
    text = json.dumps(document, allow_nan=True, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from(((",", ":"), (", ", ": ")))))
    value = text.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes UTF-8 forbids
    if draw(st.integers(0, 99)) >= 85:
        value = _mutations(draw, value)
    return value


raw_records = encoded(raw_documents)
label_records = encoded(label_documents)


def collect(strategy: st.SearchStrategy[bytes], n: int,
            keep: Callable[[bytes], bool] = lambda _v: True) -> list[bytes]:
    """Up to `n` records drawn from `strategy` that `keep` keeps (outside a @given test)."""
    from hypothesis import HealthCheck, Phase, given, settings

    out: list[bytes] = []

    @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(value: bytes) -> None:
        if keep(value):
            out.append(value)

    draw()
    return out
