"""The CLI's helpers: endpoints and keys, results lines, progress arithmetic."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import attrs
import pytest

from omnivid import Task, TaskError, TaskStatus
from omnivid.batch._outcome import BatchStats
from omnivid.cli._batch_rows import _cap_line
from omnivid.cli._env import Endpoint, parse_base_urls, real_endpoints
from omnivid.cli._jobs import UsageError
from omnivid.cli._progress import BatchDisplay, format_duration
from omnivid.cli._results import (
    ResultCounts,
    ResultRecord,
    ResultsFile,
    clean_amount,
    format_spend,
)
from omnivid.cli._tasks import _task_text
from omnivid.errors import ConfigurationError


def test_base_url_for_named_provider() -> None:
    """``PROVIDER=URL`` sets that provider's base URL, without a trailing slash."""
    urls = parse_base_urls(["evolink=http://127.0.0.1:9/evolink/"], ["apimart", "evolink"])
    assert urls == {"evolink": "http://127.0.0.1:9/evolink"}


def test_bare_base_url_needs_a_single_provider() -> None:
    """A bare URL is refused when the run uses two providers."""
    assert parse_base_urls(["http://h/a"], ["apimart"]) == {"apimart": "http://h/a"}
    with pytest.raises(UsageError, match="PROVIDER=URL"):
        parse_base_urls(["http://h/a"], ["apimart", "evolink"])


def test_base_url_unknown_provider() -> None:
    """``NAME=URL`` with an unknown name lists the known providers."""
    with pytest.raises(UsageError, match="unknown provider 'acme'"):
        parse_base_urls(["acme=http://h"], ["apimart"])


def test_base_url_must_be_http() -> None:
    """A base URL must be http(s)."""
    with pytest.raises(UsageError, match="must be an http"):
        parse_base_urls(["apimart=ftp://h"], ["apimart"])


def test_missing_key_message_names_variable_and_simulate() -> None:
    """A missing key names the environment variable and ``--simulate``."""
    with pytest.raises(ConfigurationError) as info:
        real_endpoints(["evolink"], {}, environ={})
    assert str(info.value) == (
        "no API key for evolink: set EVOLINK_API_KEY (or use --simulate to try omnivid without one)"
    )


def test_endpoint_from_environment_hides_key() -> None:
    """Keys and base URLs come from the environment; the key is not in the repr."""
    env = {"APIMART_API_KEY": "sk-hidden", "OMNIVID_APIMART_BASE_URL": "http://h/apimart"}
    endpoint = real_endpoints(["apimart"], {}, environ=env)["apimart"]
    assert endpoint == Endpoint("apimart", "http://h/apimart", "sk-hidden")
    assert "sk-hidden" not in repr(endpoint)


def test_results_stream_in_the_order_jobs_end(tmp_path: Path) -> None:
    """Rows are appended as jobs end (not sorted), one JSON object per line, each flushed, so
    the file is complete and valid at every moment; a new run starts it over."""
    path = tmp_path / "results.jsonl"
    results = ResultsFile(path)
    results.open()
    second = ResultRecord(key="b", line=2, status="failed", ok=False, error="task failed")
    first = ResultRecord(key="a", line=1, status="completed", ok=True, videos=("v/a.mp4",))
    results.append(second)
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["b"]
    results.append(first)
    results.close()
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["b", "a"]
    assert rows[1]["videos"] == ["v/a.mp4"]
    assert rows[0]["error"] == "task failed"
    results.open()
    results.close()
    assert path.read_text() == ""


def test_result_counts_make_the_summary() -> None:
    """The summary's counts and spend come from counters, not from rows kept in memory."""
    counts = ResultCounts()
    for record in (
        ResultRecord(key="a", line=1, status="completed", ok=True, provider="apimart", cost=0.4),
        ResultRecord(key="b", line=2, status="expired", ok=False, provider="apimart", cost=0.4),
        ResultRecord(
            key="c", line=3, status="completed", ok=True, provider="apimart", cost=0.4,
            from_journal=True,
        ),
        ResultRecord(key="d", line=4, status="invalid", ok=False),
    ):  # fmt: skip
        counts.add(record)
    assert counts.line(5) == "2 ok, 1 expired, 1 invalid, 1 interrupted"
    assert counts.spent == {"apimart": pytest.approx(1.2)}
    assert counts.spent_this_run == {"apimart": pytest.approx(0.8)}
    assert not counts.all_ok


def test_spend_per_provider_with_units() -> None:
    """Spend is shown per provider, EvoLink's as the credits its API says it reserved."""
    assert format_spend({"apimart": 0.4}) == "0.40"
    assert format_spend({"apimart": 0.4, "evolink": 102.34}) == (
        "0.40 (apimart) + 102.34 credits reserved (evolink)"
    )


def test_format_duration() -> None:
    """Durations print as seconds, minutes or hours; unknown as ``?``."""
    assert [format_duration(s) for s in (None, 42, 185, 3720)] == ["?", "42s", "3m05s", "1h02m"]


def test_eta_from_pace() -> None:
    """ETA = elapsed x remaining / finished this run; unknown before the first."""
    display = BatchDisplay(4, stream=io.StringIO(), mode="log")
    assert display.eta() is None
    display._started -= 10.0
    display.job_finished(ResultRecord(key="1", line=1, status="completed", ok=True))
    eta = display.eta()
    assert eta is not None
    assert 29.0 < eta < 31.0


def test_log_line_per_finished_job() -> None:
    """Without a bar each finished job is one log line with its task and cost."""
    stream = io.StringIO()
    with BatchDisplay(2, stream=stream, mode="log") as display:
        display.job_finished(
            ResultRecord(key="k", line=1, status="completed", ok=True, task_id="t1", cost=0.4)
        )
    assert stream.getvalue() == "[1/2] ok key=k task=t1 cost=0.40\n"


def test_journal_results_do_not_count_as_spend() -> None:
    """Jobs replayed from the journal are counted but add nothing to this run's spend."""
    display = BatchDisplay(2, stream=io.StringIO(), mode="quiet")
    display.job_finished(
        ResultRecord(key="k", line=1, status="completed", ok=True, cost=1.0, from_journal=True)
    )
    assert (display.ok, display.spend) == (1, {})


def test_amounts_show_no_float_residue(tmp_path: Path) -> None:
    """Sums that leave float residue print and store as clean figures, never ``-0.00``."""
    residue = 0.1 + 0.2 - 0.3  # 5.55e-17
    assert clean_amount(residue) == 0.0 and clean_amount(-residue) == 0.0
    assert clean_amount(0.1 + 0.2) == 0.3
    assert format_spend({"apimart": -residue, "evolink": 102.34 + residue}) == (
        "0.00 (apimart) + 102.34 credits reserved (evolink)"
    )
    record = ResultRecord(
        key="k", line=1, status="completed", ok=True, cost=0.1 + 0.2, credits=residue
    )
    row = json.loads(record.to_json())
    assert (row["cost"], row["credits"]) == (0.3, 0.0)
    stream = io.StringIO()
    with BatchDisplay(1, stream=stream, mode="log") as display:
        display.job_finished(attrs.evolve(record, cost=-residue))
    assert stream.getvalue() == "[1/1] ok key=k\n"  # a zero cost is not shown, let alone -0.00


def test_status_text_cleans_figures_and_skips_unknown_model() -> None:
    """``omnivid status`` text: no ``model ?`` row, no float residue, the reason said once."""
    task = Task(
        id="task_1",
        provider="apimart",
        status=TaskStatus.FAILED,
        progress=100,
        cost=1.1102230246251565e-16,
        credits=4 + 1.1102230246251565e-15,
        error=TaskError(code="task_failed", message="content moderation rejected the prompt"),
    )
    text = _task_text(task)
    assert "model" not in text and "?" not in text and "e-1" not in text
    assert re.search(r"^cost\s+0\.00 \(4 credits\)$", text, re.M)
    assert re.search(r"^error\s+content moderation rejected the prompt$", text, re.M)
    evolink = attrs.evolve(
        task, provider="evolink", model="m", error=TaskError(code="content_policy", message="no")
    )
    assert re.search(r"^model\s+m$", _task_text(evolink), re.M)
    assert evolink.failure_reason == "content_policy: no"


def test_budget_line_shows_no_float_residue() -> None:
    """The budget line of the summary never shows ``-0.00`` for a spend that sums to 0."""
    stats = BatchStats(cost_spent_total=-1.1102230246251565e-16, max_cost=2.0)
    assert _cap_line("apimart", stats) == "budget apimart: spent 0.00 of cap 2.00"
