"""The journal remembers each account's learnt rate, so a rerun starts there (issue 15 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from journalhelp import client, jobs

from omnivid import Journal
from omnivid.journal import RateMemory
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


def test_the_sqlite_journal_remembers_a_rate_per_account(journal: Journal) -> None:
    """learned_rate gives back what remember_rate kept, per account, across a reopen."""
    assert isinstance(journal, RateMemory)
    assert journal.learned_rate("apimart|x") is None
    journal.remember_rate("apimart|x", 37.5)
    journal.remember_rate("apimart|x", 42.0)
    journal.remember_rate("evolink|y", 9.0)
    path = journal.path
    journal.close()
    with Journal.open(path) as again:
        assert again.learned_rate("apimart|x") == 42.0
        assert again.learned_rate("evolink|y") == 9.0


async def test_a_rerun_starts_from_the_rate_the_last_run_learnt(
    sim: Simulator, journal_path: Path
) -> None:
    """A batch keeps its gate's learnt rate in the journal; the next batch's gate starts there
    (no slow start, no 429s to find it again)."""
    async with client(sim, slow_start=True) as c:
        c.gate.resume_from(25.0)  # as if learnt: the gate now has a rate worth keeping
        learned = c.gate.learned_rate
        assert learned is not None
        async with c.map(jobs(2), journal=journal_path) as out:
            assert all([o.ok async for o in out])
        account = c.account
    with Journal.open(journal_path) as j:
        assert j.learned_rate(account) == pytest.approx(learned)
    async with client(sim, slow_start=True) as again:
        assert again.gate.ramping
        async with again.map(jobs(3), journal=journal_path) as out:
            assert all([o.ok async for o in out])
        assert not again.gate.ramping and again.gate.rate == pytest.approx(learned, rel=0.05)
