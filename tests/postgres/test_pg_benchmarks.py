"""Smoke tests of the PostgreSQL benchmarks at tiny size (``--quick``), so neither can rot:
B8 (three workers on one account) and B5pg (the PostgreSQL journal's cost on B1)."""

from __future__ import annotations

from benchmarks import b5_postgres, b8_scale_out


def test_b8_runs_three_contenders_without_double_submissions(pg_url: str) -> None:
    """B8 --quick: every contender runs its jobs; the shared batch submits each job once."""
    result = b8_scale_out.run(quick=True)
    runs = result.data["runs"]
    assert runs[0]["name"] == "3 workers, one PostgreSQL batch"
    assert all(r["tasks"] == b8_scale_out.QUICK_JOBS for r in runs)
    assert all(r["double_submissions"] == 0 for r in runs)
    shared = runs[0]["workers"]
    assert all(w["stats"]["outcomes"] == b8_scale_out.QUICK_JOBS for w in shared)
    assert all(w["stats"]["round_trips"] > 0 for w in shared)


def test_b5pg_compares_sqlite_and_postgres(pg_url: str) -> None:
    """B5pg --quick: the three contenders finish every job; round trips per job reported."""
    result = b5_postgres.run(quick=True)
    summary = result.data["summary"]
    assert {s["completed"] for s in summary.values()} == {b5_postgres.QUICK_JOBS}
    assert result.data["round_trips_per_job"] > 1
