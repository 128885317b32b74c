"""examples/bulk_script.py: a folder of videos from prompts, against the in-process simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _examples import EXAMPLES, load_example

bulk = load_example("bulk_script")


def results(out: Path) -> list[dict[str, Any]]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_script_runs_from_the_command_line(tmp_path: Path) -> None:
    """`python examples/bulk_script.py --simulate --out DIR` saves one video per prompt."""
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "bulk_script.py"), "--simulate", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = results(tmp_path)
    assert len(rows) == len(bulk.BUILT_IN_PROMPTS)
    assert all(row["status"] == "completed" for row in rows)
    assert sorted(tmp_path.glob("*.mp4")) == sorted(Path(row["files"][0]) for row in rows)
    assert all(p.stat().st_size > 0 for p in tmp_path.glob("*.mp4"))


def test_prompts_file_with_a_failure_reports_it_and_exits_1(tmp_path: Path) -> None:
    """Comments and blank lines are skipped; a failed prompt is recorded, the rest are saved."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "# my prompts\nfox in snow [[duration=5]]\n\nfox again [[duration=5]] [[fail:moderation]]\n"
    )
    out = tmp_path / "out"
    status = bulk.main([str(prompts), "--simulate", "--out", str(out), "--duration", "6"])
    rows = {row["key"]: row for row in results(out)}
    assert status == 1
    assert rows["001"]["status"] == "completed" and rows["001"]["files"]
    assert rows["002"]["status"] == "failed" and "moderation" in rows["002"]["error"]
    assert len(list(out.glob("*.mp4"))) == 1


def test_evolink_run_uses_a_reference_image(tmp_path: Path) -> None:
    """With --provider evolink the simulated run supplies the required reference image."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox [[duration=5]]\n")
    out = tmp_path / "out"
    status = bulk.main([str(prompts), "--simulate", "--provider", "evolink", "--out", str(out)])
    assert status == 0
    assert results(out)[0]["status"] == "completed"


def test_rerun_resumes_from_the_journal_without_resubmitting(tmp_path: Path) -> None:
    """A second run over the same folder reuses the first run's tasks and files."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("one [[duration=5]]\ntwo [[duration=5]]\n")
    out = tmp_path / "out"
    assert bulk.main([str(prompts), "--simulate", "--out", str(out)]) == 0
    first = results(out)
    assert bulk.main([str(prompts), "--simulate", "--out", str(out)]) == 0
    assert [r["task_id"] for r in results(out)] == [r["task_id"] for r in first]
    assert len(list(out.glob("*.mp4"))) == 2
