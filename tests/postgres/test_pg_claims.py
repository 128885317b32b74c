"""PostgreSQL journal: entries as SQLite keeps them, claims, leases and fencing tokens."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import attrs
import pytest
from pghelp import OpenJournal

from omnivid import Journal, Task, TaskStatus, VideoRequest
from omnivid.journal import JournalBackend
from omnivid.journal._postgres import LeaseLostError, PostgresJournal
from omnivid.providers import get_provider

pytestmark = pytest.mark.anyio

SEEDS = Path(__file__).parents[1] / "fixtures" / "seeds"
SEED_TASKS = [
    ("apimart", "apimart_ext_task_completed.json", "Omni-Flash-Ext"),
    ("apimart", "apimart_gemini_task_completed.json", "gemini-omni-flash-preview"),
    ("evolink", "evolink_task_completed.json", "gemini-omni-flash-reference-to-video"),
    ("evolink", "evolink_task_failed.json", "gemini-omni-flash-reference-to-video"),
]
REQUEST = VideoRequest(model="Omni-Flash-Ext", prompt="a fox", duration=6)


def pending(task_id: str = "task_1") -> Task:
    """A task as a submit returns it."""
    return Task(id=task_id, provider="apimart", model="Omni-Flash-Ext", status=TaskStatus.PENDING)


def request(i: int) -> VideoRequest:
    """A distinct request."""
    return VideoRequest(model="Omni-Flash-Ext", prompt=f"a fox {i}", duration=6)


async def intent(journal: PostgresJournal, key: str, req: VideoRequest = REQUEST) -> bool:
    """The protocol's intent for ``key`` (not new)."""
    return await journal.write_intent(
        key, req, provider="apimart", fingerprint=req.fingerprint(), run="r", new=False
    )


def test_the_journal_has_every_method_of_the_protocol() -> None:
    """PostgresJournal implements JournalBackend as it stands."""
    missing = [
        name
        for name in dir(JournalBackend)
        if not name.startswith("_") and not hasattr(PostgresJournal, name)
    ]
    assert not missing


@pytest.mark.parametrize(("provider", "seed", "model"), SEED_TASKS)
@pytest.mark.parametrize("form", ["body", "provider", "omnivid"])
async def test_entries_read_back_as_sqlite_keeps_them(
    open_journal: OpenJournal, tmp_path: Path, provider: str, seed: str, model: str, form: str
) -> None:
    """The same protocol calls on SQLite and PostgreSQL give the same entries (times aside),
    and to_task() reads the task back whole, in each task form."""
    body = (SEEDS / seed).read_text()
    task = get_provider(provider).parse_task(json.loads(body), model=model)
    if form == "omnivid":
        task = attrs.evolve(task, raw={})
    req = VideoRequest(model=model, prompt="a fox")
    pg = await open_journal()
    backends: list[JournalBackend] = [Journal.open(tmp_path / "j.sqlite"), pg]
    for journal in backends:
        written = await journal.write_intent(
            "a", req, provider=provider, fingerprint=req.fingerprint(), run="r1", new=True,
            reserved=0.5,
        )  # fmt: skip
        assert written
        await journal.write_submitted("a", task, task_ids=[task.id], attempts=1, reserved=0.4)
        journal.record_finished("a", task, cost=0.25, body=body if form == "body" else None)
        journal.record_error("a", "a note")
    await pg.aflush()
    await pg.refresh()
    sqlite_entry, pg_entry = (journal.get("a") for journal in backends)
    assert sqlite_entry is not None and pg_entry is not None
    times = {"created_at": 0.0, "updated_at": 0.0}
    assert attrs.evolve(pg_entry, **times) == attrs.evolve(sqlite_entry, **times)
    assert pg_entry.task_form == form and pg_entry.to_task() == task
    assert pg.spending(provider) == backends[0].spending(provider)
    backends[0].close()


async def test_each_job_is_claimed_by_exactly_one_worker(open_journal: OpenJournal) -> None:
    """Two workers (two pools), 16 coroutines each, claim the same 40 keys at once: every key
    goes to exactly one of them."""
    workers = [await open_journal(pool_size=4), await open_journal(pool_size=4)]
    won: list[tuple[str, str]] = []

    async def claimer(journal: PostgresJournal, start: int) -> None:
        for i in range(40):
            key = f"k{(i + start) % 40}"
            claim = await journal.claim(key, request((i + start) % 40), provider="apimart")
            if claim.status == "claimed":
                won.append((key, journal.worker))
            else:
                assert claim.status == "held"

    async with anyio.create_task_group() as tg:
        for n in range(32):
            tg.start_soon(claimer, workers[n % 2], n)
    # a worker re-claiming its own job wins it again: count winners per key, not claims
    assert {key for key, _ in won} == {f"k{i}" for i in range(40)}
    owners = {key: {w for k, w in won if k == key} for key, _ in won}
    assert all(len(who) == 1 for who in owners.values())


async def test_claim_next_hands_each_job_out_once(open_journal: OpenJournal) -> None:
    """300 queued jobs, two workers with 8 coroutines each taking 3 at a time (SKIP LOCKED):
    every job is handed out exactly once."""
    first = await open_journal()
    second = await open_journal()
    added = await first.add_jobs(((f"k{i}", request(i)) for i in range(300)), provider="apimart")
    assert added == 300
    assert await second.add_jobs([("k0", request(0))], provider="apimart") == 0
    taken: Counter[str] = Counter()

    async def taker(journal: PostgresJournal) -> None:
        while claims := await journal.claim_next(3):
            taken.update(c.key for c in claims)
            assert all(c.entry.state == "not_submitted" and c.row.queued for c in claims)

    async with anyio.create_task_group() as tg:
        for n in range(16):
            tg.start_soon(taker, (first, second)[n % 2])
    assert len(taken) == 300 and set(taken.values()) == {1}


async def test_a_submitted_job_passes_to_another_worker_once_its_lease_ran_out(
    open_journal: OpenJournal, expire: object
) -> None:
    """A holds a submitted job and stops renewing; once the lease ran out B claims it, to poll
    (never to submit); A's later writes are refused and its task id is kept."""
    a, b = await open_journal(), await open_journal()
    assert (await a.claim("k", REQUEST, provider="apimart")).status == "claimed"
    assert await intent(a, "k")
    await a.write_submitted("k", pending("t1"), task_ids=["t1"], attempts=1)
    assert (await b.claim("k", REQUEST, provider="apimart")).status == "held"
    expire("k")  # type: ignore[operator]
    taken = await b.claim("k", REQUEST, provider="apimart")
    assert taken.status == "claimed" and taken.entry.state == "submitted"
    assert taken.entry.task_id == "t1" and taken.token == (a.token("k") or 0) + 1
    assert (await b.claim_next(5)) == []  # held by B now: nobody else gets it

    # A, stale, tries to record a second task id: refused, the id kept in task_ids
    with pytest.raises(LeaseLostError, match="lease lost"):
        await a.write_submitted("k", pending("t2"), task_ids=["t1", "t2"], attempts=2)
    assert "k" in a.lost and a.token("k") is None
    row = (await b.fetch(["k"]))["k"]
    assert row.entry.task_ids == ("t1", "t2") and row.entry.state == "submitted"
    assert row.worker == "w2" and "lost the job's lease" in (row.entry.error or "")

    done = attrs.evolve(pending("t1"), status=TaskStatus.COMPLETED)
    b.record_finished("k", done, cost=0.3)
    await b.aflush()
    row = (await a.fetch(["k"]))["k"]
    assert row.entry.state == "completed" and row.lease_until is None and row.worker == "w2"
    assert (await a.claim("k", REQUEST, provider="apimart")).status == "done"


async def test_a_fencing_token_refuses_a_stale_writer(
    open_journal: OpenJournal, expire: object
) -> None:
    """A claimed, stalled past its lease; B claimed (token + 1). A's intent and lazy records
    change nothing."""
    a, b = await open_journal(), await open_journal()
    await a.claim("k", REQUEST, provider="apimart")
    expire("k")  # type: ignore[operator]
    assert (await b.claim("k", REQUEST, provider="apimart")).status == "claimed"
    with pytest.raises(LeaseLostError):
        await intent(a, "k")
    a.record_error("k", "stale note")
    a.record_not_submitted("k", REQUEST, provider="apimart", reason="stale")
    await a.aflush()
    row = (await b.fetch(["k"]))["k"]
    assert row.entry.error is None and row.queued and row.worker == "w2" and row.live
    assert await intent(b, "k")  # B, the holder, writes


async def test_an_ambiguous_intent_is_never_handed_out(
    open_journal: OpenJournal, expire: object
) -> None:
    """A recorded an intent and died (lease ran out): the job is ambiguous, reported, and
    handed to nobody unless claimed with ambiguous=True."""
    a, b = await open_journal(), await open_journal()
    await a.add_jobs([("k", REQUEST)], provider="apimart")
    assert [c.key for c in await a.claim_next()] == ["k"]
    assert await intent(a, "k")
    expire("k")  # type: ignore[operator]
    assert (await b.claim_next(10)) == []
    claim = await b.claim("k", REQUEST, provider="apimart")
    assert claim.status == "ambiguous" and claim.token is None and claim.entry.ambiguous
    assert [row.key for row in await b.ambiguous()] == ["k"]
    assert not await intent(b, "k")  # the protocol's path (no claim) never takes it either
    resubmit = await b.claim("k", REQUEST, provider="apimart", ambiguous=True)
    assert resubmit.status == "claimed" and resubmit.entry.state == "intent"


async def test_claim_statuses(open_journal: OpenJournal) -> None:
    """held (another worker's live lease), conflict (another request under the key), done
    (finished: who ran it), and a worker re-claiming its own job."""
    a, b = await open_journal(), await open_journal()
    first = await a.claim("k", REQUEST, provider="apimart")
    again = await a.claim("k", REQUEST, provider="apimart")
    assert again.status == "claimed" and again.token == (first.token or 0) + 1
    held = await b.claim("k", REQUEST, provider="apimart")
    assert held.status == "held" and held.row.worker == "w1" and held.row.live
    assert (await b.claim("k", request(9), provider="apimart")).status == "conflict"
    assert (await b.claim("k", REQUEST, provider="evolink")).status == "conflict"
    assert await intent(a, "k")
    await a.write_submitted("k", pending(), task_ids=["task_1"], attempts=1)
    a.record_finished("k", attrs.evolve(pending(), status=TaskStatus.FAILED), cost=0.0)
    await a.aflush()
    done = await b.claim("k", REQUEST, provider="apimart")
    assert done.status == "done" and done.row.worker == "w1" and done.entry.state == "failed"


async def test_renew_keeps_leases_and_reports_the_lost(
    open_journal: OpenJournal, expire: object, sql: object
) -> None:
    """One UPDATE renews all of a worker's leases, even run out ones nobody took; a job
    another worker took meanwhile is reported lost."""
    a, b = await open_journal(), await open_journal()
    for key in ("x", "y", "z"):
        await a.claim(key, REQUEST, provider="apimart")
        expire(key)  # type: ignore[operator]
    assert (await b.claim("y", REQUEST, provider="apimart")).status == "claimed"
    before = a.db.round_trips
    assert await a.renew() == {"y"}
    assert a.db.round_trips == before + 1
    rows = await b.fetch(["x", "y", "z"])
    assert {k: (r.worker, r.live) for k, r in rows.items()} == {
        "x": ("w1", True), "y": ("w2", True), "z": ("w1", True)
    }  # fmt: skip
    assert a.lost == {"y"}


async def test_a_heartbeat_keeps_a_short_lease_alive(open_journal: OpenJournal) -> None:
    """A 0.4 s lease renewed every 0.05 s outlives 0.6 s; after the heartbeat stops, another
    worker takes the job once the lease runs out."""
    a, b = await open_journal(lease=0.4), await open_journal()
    await a.claim("k", REQUEST, provider="apimart")
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.heartbeat, 0.05)
        await anyio.sleep(0.6)
        assert (await b.claim("k", REQUEST, provider="apimart")).status == "held"
        tg.cancel_scope.cancel()
    await anyio.sleep(0.45)
    assert (await b.claim("k", REQUEST, provider="apimart")).status == "claimed"


async def test_unclaimed_intents_race_for_a_new_key(open_journal: OpenJournal) -> None:
    """The protocol's path (no claim first): many workers write the intent of a new key at
    once; exactly one writes it, the others get False."""
    workers = [await open_journal(pool_size=2) for _ in range(4)]
    results: list[bool] = []

    async def write(journal: PostgresJournal) -> None:
        results.append(
            await journal.write_intent(
                "k",
                REQUEST,
                provider="apimart",
                fingerprint=REQUEST.fingerprint(),
                run="r",
                new=True,
            )
        )

    async with anyio.create_task_group() as tg:
        for journal in workers * 3:
            tg.start_soon(write, journal)
    assert sorted(results) == [False] * 11 + [True]


async def test_unclaimed_intents_never_take_another_workers_submit(
    open_journal: OpenJournal, expire: object
) -> None:
    """A worker whose cache is stale (it saw the key queued) writes an intent without a claim:
    refused for another worker's submitted job even after its lease ran out; taken for a
    queued or not_submitted one, and for its own job."""
    a, b = await open_journal(), await open_journal()
    await a.add_jobs([("s", REQUEST), ("q", request(1))], provider="apimart")
    assert await intent(a, "s")
    await a.write_submitted("s", pending(), task_ids=["task_1"], attempts=1)
    expire("s")  # type: ignore[operator]
    assert not await intent(b, "s")
    assert await intent(b, "q", request(1)) and b.token("q") == 1
    assert await intent(b, "q", request(1))  # its own: again (a resubmit)
    b.record_not_submitted("q", request(1), provider="apimart", reason="budget")
    await b.aflush()
    assert await intent(a, "q", request(1))  # not_submitted, nobody holds it: taken


async def test_results_counts_and_batches_apart(open_journal: OpenJournal) -> None:
    """results() lists every entry of the batch in key order, over pages; counts() per state;
    another batch with the same keys is separate."""
    a = await open_journal()
    other = await open_journal(batch=a.batch + "-other")
    await a.add_jobs(((f"k{i:03}", request(i)) for i in range(25)), provider="apimart")
    await other.add_jobs([("k000", request(0))], provider="apimart")
    await intent(a, "k001", request(1))
    keys = [row.key async for row in a.rows(page=7)]
    assert keys == [f"k{i:03}" for i in range(25)]
    assert [e.key async for e in a.results()] == keys
    assert await a.counts() == {"queued": 24, "intent": 1}
    assert await other.counts() == {"queued": 1}
    await a.refresh()
    assert len(a.keys()) == 25 and a.get("k001") is not None
