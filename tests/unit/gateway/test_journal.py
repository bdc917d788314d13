"""The spend journal: what a killed gateway leaves for its next start, read defensively."""

from __future__ import annotations

from pathlib import Path

from agent_operator.gateway.ledger import JOURNAL_FILE, Journal


def test_last_line_of_a_key_wins_and_truncate_empties(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("day:2026-11-29", 0.5, {})
    journal.append("day:2026-11-29", 0.75, {})
    journal.append("month:2026-11", 0.75, {})
    assert Journal(tmp_path).read() == {"day:2026-11-29": 0.75, "month:2026-11": 0.75}
    journal.truncate()
    assert Journal(tmp_path).read() == {}
    journal.close()


def test_hostile_or_torn_content_is_skipped(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(
        b"day:2026-11-29 0.5\n"
        b"day:2026-11-29 nan\n"  # never a NaN
        b"day:2026-11-29 -3\n"  # never negative
        b"day:2026-11-29 1e999\n"  # never infinite
        b"year:2026 5\n"  # no such period: it could not be written as a record
        b"\xff\xfe\x00 7\n"
        + b"day:"
        + b"9" * 100
        + b" 1\n"
        + b"day:2026-11-29 0.6"  # torn last line (no newline) still parses
    )
    assert Journal(tmp_path).read() == {"day:2026-11-29": 0.6}


def test_a_growing_journal_is_compacted_without_losing_a_total(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    totals = {"day:2026-11-29": 0.0, "month:2026-11": 0.0}
    for _ in range(5000):  # the API away for a long burst: nothing truncates it
        for key in totals:
            totals[key] += 0.001
            journal.append(key, totals[key], totals)
    assert (tmp_path / JOURNAL_FILE).stat().st_size < 128 * 1024
    read = Journal(tmp_path).read()
    for key, value in totals.items():
        assert abs(read[key] - value) < 0.002  # at most the last line short
    journal.close()
