"""Parsing batch files: keys, providers, and a clear error per bad line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnivid.cli._jobs import UsageError, parse_jobs, read_jobs

EXT = {"model": "Omni-Flash-Ext", "prompt": "a fox", "duration": 6}
R2V = {
    "model": "gemini-omni-flash-reference-to-video",
    "prompt": "a robot",
    "images": ["https://example.com/a.png"],
}


def lines(*items: object) -> list[str]:
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


def test_key_defaults_to_line_number() -> None:
    """A line without ``key`` is keyed by its 1-based line number."""
    parsed = parse_jobs(lines("", EXT, {**EXT, "key": "named"}))
    assert [job.key for job in parsed.jobs] == ["2", "named"]


def test_integer_key_becomes_string() -> None:
    """An integer key is accepted and stored as a string."""
    parsed = parse_jobs(lines({**EXT, "key": 7}))
    assert parsed.jobs[0].key == "7"


def test_blank_and_comment_lines_are_skipped() -> None:
    """Blank lines and ``#`` comments are neither jobs nor errors."""
    parsed = parse_jobs(["# header", "   ", *lines(EXT)])
    assert (len(parsed.jobs), parsed.errors) == (1, ())
    assert parsed.jobs[0].line == 3


def test_provider_inferred_from_model() -> None:
    """Without ``provider`` the job goes to the provider offering its model."""
    parsed = parse_jobs(lines(EXT, R2V))
    assert [job.provider for job in parsed.jobs] == ["apimart", "evolink"]
    assert parsed.providers == ["apimart", "evolink"]


def test_line_provider_beats_default() -> None:
    """A line's ``provider`` wins over ``--provider``; a wrong one fails validation."""
    parsed = parse_jobs(lines({**EXT, "provider": "evolink"}), default_provider="apimart")
    assert parsed.jobs == ()
    assert "evolink offers" in parsed.errors[0].message


def test_invalid_json_names_line_and_column() -> None:
    """Broken JSON is reported with its line number and column."""
    parsed = parse_jobs(lines(EXT, '{"model": "Omni-Flash-Ext", prompt}', EXT))
    assert len(parsed.jobs) == 2
    (error,) = parsed.errors
    assert error.line == 2
    assert str(error).startswith("line 2: not valid JSON")
    assert "column" in error.message


def test_non_object_line_is_an_error() -> None:
    """A JSON value that is not an object is refused."""
    parsed = parse_jobs(lines([1, 2]))
    assert parsed.errors[0].message == "expected a JSON object, got list"


def test_validation_error_names_field_value_and_rule() -> None:
    """A provider rule violation names the field, the value and the rule."""
    parsed = parse_jobs(lines({**EXT, "duration": 7}))
    message = parsed.errors[0].message
    assert "duration=7" in message
    assert "4, 6, 8 or 10" in message


def test_unknown_field_is_an_error() -> None:
    """A field VideoRequest does not have is named."""
    parsed = parse_jobs(lines({**EXT, "seconds": 5}))
    assert parsed.errors[0].message.startswith("seconds=5: unknown field")


def test_unknown_model_is_an_error() -> None:
    """A model no provider offers is refused, listing the known ones."""
    parsed = parse_jobs(lines({"model": "sora-9", "prompt": "x"}))
    assert "model='sora-9'" in parsed.errors[0].message
    assert "Omni-Flash-Ext" in parsed.errors[0].message


def test_unknown_provider_is_an_error() -> None:
    """An unknown ``provider`` names the known ones."""
    parsed = parse_jobs(lines({**EXT, "provider": "acme"}))
    assert "provider='acme'" in parsed.errors[0].message
    assert "apimart" in parsed.errors[0].message


def test_duplicate_key_is_an_error() -> None:
    """A key used twice fails on its second line, naming the first."""
    parsed = parse_jobs(lines({**EXT, "key": "a"}, {**EXT, "key": "a"}))
    assert len(parsed.jobs) == 1
    assert parsed.errors[0].message == "key 'a' is already used on line 1"


@pytest.mark.parametrize(
    ("items", "error"),
    [
        # an explicit key written as a keyless line's number meets that line's key
        ([EXT, {**EXT, "key": "1"}], (2, "key '1' is already used on line 1")),
        ([EXT, {**EXT, "key": 1}], (2, "key '1' is already used on line 1")),
        # a keyless line meets an earlier explicit key equal to its number
        ([{**EXT, "key": "2"}, EXT], (2, "key '2' is already used on line 1")),
        # "01" is not the key "1"; a line that is not JSON claims no key
        ([EXT, {**EXT, "key": "01"}], None),
        (["{not json", {**EXT, "key": "1"}], (1, "not valid JSON")),
    ],
)
def test_line_numbers_and_explicit_keys_meet(
    items: list[object], error: tuple[int, str] | None
) -> None:
    """Keys of keyless lines (their numbers) and explicit keys share one namespace."""
    parsed = parse_jobs(lines(*items))
    if error is None:
        assert not parsed.errors and len(parsed.jobs) == 2
    else:
        (only,) = parsed.errors
        assert only.line == error[0] and only.message.startswith(error[1])


def test_wrong_type_for_images_is_an_error() -> None:
    """``images`` must be a string or a list of strings."""
    parsed = parse_jobs(lines({**R2V, "images": 5}))
    assert parsed.errors[0].message == "images=5: must be a string or a list of strings"


def test_media_checked_before_network() -> None:
    """A local image for an APIMart model (URLs only) is refused while parsing."""
    parsed = parse_jobs(
        lines({**EXT, "images": ["cat.jpg"], "generation_type": "frame", "duration": 6})
    )
    assert "images[0]='cat.jpg'" in parsed.errors[0].message


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """An unreadable batch file is one usage error naming it."""
    with pytest.raises(UsageError, match=r"no such file"):
        read_jobs(tmp_path / "nope.jsonl")


def test_example_file_is_valid() -> None:
    """examples/prompts.jsonl has a dozen valid jobs across all three models."""
    path = Path(__file__).resolve().parents[2] / "examples" / "prompts.jsonl"
    parsed = read_jobs(path)
    assert parsed.errors == ()
    assert len(parsed.jobs) >= 12
    assert {job.request.model for job in parsed.jobs} == {
        "Omni-Flash-Ext",
        "gemini-omni-flash-preview",
        "gemini-omni-flash-reference-to-video",
    }
