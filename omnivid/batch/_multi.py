"""One batch over several provider accounts: :func:`map_many` and :class:`MultiMapRun`.

``client.map`` runs the jobs of one account. ``map_many`` runs one ``client.map`` per account
(each with its own rate limit, 429 cooldown, in-flight limit and budget) under one task group
and joins them into one stream of outcomes, with one journal::

    input ──> router ──┬── stream ──> MapRun(apimart) ──> pump ──┐
                       ├── stream ──> MapRun(evolink) ──> pump ──┼──> outcomes (one stream)
                       └── (unknown model, key of another account) ──┘

* The **router** (one task) pulls the input lazily and hands each job to the account whose
  provider offers its model, through a bounded memory stream: nothing is read ahead of the
  accounts' windows (``max_in_flight + prefetch`` each) and those streams, so a generator of a
  million requests runs in constant memory. The input is read in order: when the next job's
  account has no room, reading waits for it (the other accounts' jobs already handed over go
  on). A model no client serves, or a journal key already used for another account, is an
  outcome with a ``ValidationError`` / ``JournalConflictError`` and the batch goes on.
* A **pump** per account enters that account's :class:`~omnivid.MapRun` in its own task and
  passes its outcomes on; receiving one frees room in that account's window, as in ``map``.
* Everything runs in one task group owned by the ``async with`` block: leaving it (``break``,
  an exception, a cancellation) cancels the router, every account's batch and every pump, and
  each account reports the tasks it left running (:attr:`MultiMapRun.abandoned`).

Keys and the journal. The journal (a path, opened once and closed at the end, or a
``JournalBackend`` shared as it is) holds one entry per key, whatever its provider, so keys
must be unique across accounts: each account's batch refuses a key the journal holds for
another provider, and the router refuses a key it handed to another account in this run
(while it is live, or once the journal has its entry). Keys routed in this run are remembered
in a fixed-size Bloom filter (:class:`~._route.SeenKeys`), so only a key that may have been seen is
looked up in the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
)
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._aio import clock as _clock
from .._aio.tasks import close_task_group, open_task_group
from .._models import VideoRequest
from ..errors import ConfigurationError, JournalConflictError, OmnividError, ValidationError
from ..journal import JournalBackend, SharedJournal, connect_journal, is_database_url
from ..providers import list_providers
from ._events import EventHub
from ._handles import BatchInput, MapRun
from ._job import BatchOptions
from ._outcome import BatchStats, Event, Outcome
from ._policy import DEFAULT_RESUBMIT, CostEstimate, ResubmitPolicy
from ._route import (
    END,
    Inbox,
    Item,
    SeenKeys,
    clients_by_provider,
    model_routes,
    parse_item,
    per_account,
    tagged,
)

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = ["OUTCOME_BUFFER", "MultiMapRun", "map_many"]

log = logging.getLogger("omnivid")

OUTCOME_BUFFER = 64
"""Outcomes the accounts may have delivered that the caller has not received yet. Without
room for some, each outcome would cost a trip through the event loop between its account's
task and the caller's (measured: 95 against 58 µs of CPU per instant job)."""

_INT_FIELDS = tuple(f.name for f in attrs.fields(BatchStats) if f.type in (int, "int"))
"""The counters of :class:`BatchStats` (summed over accounts)."""


def map_many(
    clients: Iterable[AsyncClient],
    requests: BatchInput,
    *,
    max_in_flight: int | Mapping[str, int] = 16,
    max_cost: float | Mapping[str, float | None] | None = None,
    deadline: float | None = None,
    resubmit: ResubmitPolicy | None = DEFAULT_RESUBMIT,
    journal: str | os.PathLike[str] | JournalBackend | None = None,
    resubmit_ambiguous: bool = False,
    on_event: Callable[[Event], None] | None = None,
    cost_estimate: CostEstimate | Mapping[str, CostEstimate | None] | None = None,
    prefetch: int | None = None,
    batch: str | None = None,
) -> MultiMapRun:
    """Run requests for several providers as one batch; outcomes come back as they complete.

    ``clients``: open :class:`~omnivid.AsyncClient` s, one per provider (two for the same
    provider are a ``ConfigurationError``). Each job goes to the client whose provider offers
    its model; a model none of them offers ends as an outcome with a ``ValidationError``
    naming the model and the providers given. ``requests``: as for ``client.map`` (an iterable
    or async iterable of ``VideoRequest`` or ``(key, request)`` pairs, pulled lazily; a bare
    request is keyed by its index in the whole input).

    Per account, with a value for every account or a mapping by provider name
    (``max_cost={"apimart": 5.0, "evolink": 800}``; an account left out gets the default):
    ``max_in_flight``, ``max_cost`` (in that provider's billing unit: APIMart currency,
    EvoLink credits) and ``cost_estimate``. The other settings are ``client.map``'s and apply
    to every account. ``journal``: one journal for all of them (a path is opened once and
    closed at the end); keys must then be unique across accounts (a key used for another
    account is a ``JournalConflictError`` outcome). ``journal="postgresql://..."`` with
    ``batch="NAME"`` shares the batch with every process running it, as ``client.map`` does
    (one connection pool and one worker name for all the accounts; the batch has one budget,
    so ``max_cost`` is refused there with several providers: they bill in different units).
    ``on_event`` gets every account's events, each with ``detail["provider"]``.

    Use it as a block: it owns the accounts' batches, and leaving it cancels them::

        async with omnivid.AsyncClient("apimart") as a, omnivid.AsyncClient("evolink") as e:
            async with omnivid.map_many([a, e], requests, journal="runs/j.sqlite") as outcomes:
                async for outcome in outcomes:
                    print(outcome.key, outcome.ok)
    """
    return MultiMapRun(
        clients,
        requests,
        max_in_flight=max_in_flight,
        max_cost=max_cost,
        deadline=deadline,
        resubmit=resubmit,
        journal=journal,
        resubmit_ambiguous=resubmit_ambiguous,
        on_event=on_event,
        cost_estimate=cost_estimate,
        prefetch=prefetch,
        batch=batch,
    )


class MultiMapRun:
    """The batch :func:`map_many` returns: one async iterator of outcomes, in completion
    order, over several accounts (see the module docstring). Use it with ``async with``.

    ``statistics()`` sums the accounts' counters; ``statistics_by_provider()`` has each
    account's, its money in its own billing unit. ``abandoned`` (after a cancellation): key ->
    id of each task left running; ``abandoned_by_provider`` the same per account. If the
    input raises, no more jobs are taken; the jobs already taken finish, then the iterator
    raises that error.
    """

    def __init__(
        self,
        clients: Iterable[AsyncClient],
        requests: BatchInput,
        *,
        max_in_flight: int | Mapping[str, int] = 16,
        max_cost: float | Mapping[str, float | None] | None = None,
        deadline: float | None = None,
        resubmit: ResubmitPolicy | None = DEFAULT_RESUBMIT,
        journal: str | os.PathLike[str] | JournalBackend | None = None,
        resubmit_ambiguous: bool = False,
        on_event: Callable[[Event], None] | None = None,
        cost_estimate: CostEstimate | Mapping[str, CostEstimate | None] | None = None,
        prefetch: int | None = None,
        batch: str | None = None,
    ) -> None:
        self._clients = clients_by_provider(clients)
        if isinstance(requests, VideoRequest | str | bytes) or not isinstance(
            requests, Iterable | AsyncIterable
        ):
            raise ValidationError(
                "requests", requests, "must be an iterable or async iterable of VideoRequest"
            )
        self._requests = requests
        self._routes = model_routes(self._clients)
        names = list(self._clients)
        in_flight = per_account("max_in_flight", max_in_flight, names, 16)
        costs = per_account("max_cost", max_cost, names, None)
        shared = is_database_url(journal) or isinstance(journal, SharedJournal)
        if shared and len(names) > 1 and any(cost is not None for cost in costs.values()):
            raise ConfigurationError(
                f"max_cost={max_cost!r}: a shared (PostgreSQL) batch has one budget, and "
                f"{' and '.join(names)} bill in different units; cap each provider on a batch "
                "of its own (client.map with its own batch=)"
            )
        estimates = per_account("cost_estimate", cost_estimate, names, None)
        self._on_event = on_event
        self._options: dict[str, BatchOptions] = {}
        for name in names:
            options = BatchOptions(
                max_in_flight=in_flight[name],
                max_cost=costs[name],
                deadline=deadline,
                resubmit=resubmit,
                journal=journal,
                resubmit_ambiguous=resubmit_ambiguous,
                on_event=None if on_event is None else tagged(on_event, name),
                cost_estimate=estimates[name],
                prefetch=prefetch,
            )
            options.check()
            self._options[name] = options
        self._journal_spec = journal
        self._batch = batch
        if batch is not None and journal is None:
            raise ConfigurationError(
                f"batch={batch!r} names a batch of a shared journal: give journal="
                "'postgresql://...' too"
            )
        self._journal: JournalBackend | None = None
        self._owns_journal = False
        self._runs: dict[str, MapRun] = {}
        self._sends: dict[str, MemoryObjectSendStream[Item]] = {}
        self._receive: MemoryObjectReceiveStream[Outcome] | None = None
        self._inboxes: list[MemoryObjectReceiveStream[Item]] = []
        self._tg: anyio.abc.TaskGroup | None = None  # hosts `_run`; closed by __aexit__
        self._scope: anyio.CancelScope | None = None  # `_run`'s, which `cancel()` cancels
        self._cancelled = False
        self._state = "new"  # new | entered | closed
        self._failure: BaseException | None = None
        self._events = EventHub(on_event)  # the router's own outcomes
        self._counts = {"jobs": 0, "failed": 0}  # outcomes made by the router
        self._live: dict[str, tuple[str, int]] = {}  # journal key -> (account, jobs live)
        self._seen = SeenKeys() if journal is not None and len(names) > 1 else None
        self._done = anyio.Event()

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<MultiMapRun {self._state} providers={list(self._clients)} jobs={s.jobs} "
            f"in_flight={s.in_flight} completed={s.completed} failed={s.failed}>"
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("this MultiMapRun has already run; make a new one")
        for name, client in self._clients.items():
            if client._transport is None:
                raise ConfigurationError(
                    f"the {name} client is not open: use `async with AsyncClient(...)` around "
                    "map_many",
                    provider=name,
                )
        self._state = "entered"
        if self._journal_spec is not None:
            self._journal, self._owns_journal = await connect_journal(
                self._journal_spec, batch=self._batch
            )
        send: MemoryObjectSendStream[Outcome] | None = None
        try:
            send, self._receive = anyio.create_memory_object_stream[Outcome](OUTCOME_BUFFER)
            for name, client in self._clients.items():
                options = attrs.evolve(self._options[name], journal=self._journal)
                # the account's stream holds as many jobs as its batch pulls ahead of its slots
                buffer = options.prefetch
                if buffer is None:
                    buffer = max(8, min(options.max_in_flight, 64))
                self._sends[name], inbox = anyio.create_memory_object_stream[Item](buffer)
                self._inboxes.append(inbox)
                self._runs[name] = MapRun(client, Inbox(inbox), options)
            self._tg = tg = await open_task_group()
        except BaseException:
            self._state = "closed"
            if send is not None:
                send.close()
            if self._receive is not None:
                self._receive.close()
            for inbox in self._inboxes:
                inbox.close()
            for sending in self._sends.values():
                sending.close()
            for run in self._runs.values():
                run.discard()
            await self._close_journal()
            raise
        tg.start_soon(self._run, send, name="omnivid.batch._multi.MultiMapRun._run")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        self._state = "closed"
        try:
            await close_task_group(tg)
        finally:
            if self._receive is not None:
                self._receive.close()
            for inbox in self._inboxes:
                inbox.close()  # (an account's batch cancelled before it read its inbox)
            for run in self._runs.values():
                run.discard()  # (cancelled before it entered)
            await self._close_journal()
            self._events.close()
            self._done.set()

    def cancel(self) -> None:
        """Stop every account's batch: no more submits or polls (running tasks are reported
        in ``abandoned``)."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    # -- outcomes ----------------------------------------------------------------------------
    def __aiter__(self) -> Self:
        if self._state == "new":
            raise RuntimeError(
                "use `async with omnivid.map_many(...) as outcomes:` then `async for` over "
                "outcomes: the block owns every account's batch"
            )
        return self

    async def __anext__(self) -> Outcome:
        """The next outcome, in completion order."""
        receive = self._receive
        if self._state != "entered" or receive is None:
            raise RuntimeError("iterate inside `async with omnivid.map_many(...) as outcomes:`")
        try:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                return await receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._done.set()
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure from None
            raise StopAsyncIteration from None

    # -- information -------------------------------------------------------------------------
    @property
    def clients(self) -> Mapping[str, AsyncClient]:
        """The clients, by provider name."""
        return MappingProxyType(self._clients)

    def client_for(self, outcome: Outcome | VideoRequest | str) -> AsyncClient:
        """The client that runs a job (an outcome, a request or a model name), e.g. to
        download its video; a ``ValidationError`` for a model no client offers."""
        if isinstance(outcome, Outcome | VideoRequest):
            model = outcome.model if isinstance(outcome, VideoRequest) else outcome.request.model
        else:
            model = outcome
        name = self._routes.get(model)
        if name is None:
            raise self._unknown_model(model)
        return self._clients[name]

    def statistics(self) -> BatchStats:
        """The accounts' counters summed (jobs include those the router ended: unknown
        models, keys of another account). Money and rate are per account, in units that do
        not add up (APIMart currency, EvoLink credits): with several accounts they are left
        at 0 / None here; see :meth:`statistics_by_provider`."""
        per = self.statistics_by_provider()
        if len(per) == 1:
            (base,) = per.values()
        else:
            stops = "; ".join(s.stopped for s in per.values() if s.stopped)
            base = BatchStats(stopped=stops or None)
        sums = {name: sum(getattr(s, name) for s in per.values()) for name in _INT_FIELDS}
        sums["jobs"] += self._counts["jobs"]
        sums["failed"] += self._counts["failed"]
        tasks = sums["submitted"] + sums["resumed"]
        ratio = sums["polls"] / tasks if tasks else 0.0
        return attrs.evolve(base, polls_per_task=ratio, **sums)

    def statistics_by_provider(self) -> dict[str, BatchStats]:
        """Each account's :class:`~omnivid.BatchStats` (money in its billing unit), by
        provider name; an empty snapshot for an account whose batch has not started."""
        found = {}
        for name in self._clients:
            run = self._runs.get(name)
            started = run is not None and run._engine._started
            found[name] = (
                run.statistics()
                if run is not None and started
                else BatchStats(max_cost=self._options[name].max_cost)
            )
        return found

    @property
    def abandoned(self) -> dict[Hashable, str | None]:
        """After a cancellation: key -> id of each task left running at its provider (None
        when its submit was on the wire and its answer unknown). Empty after a full run."""
        found: dict[Hashable, str | None] = {}
        for run in self._runs.values():
            found.update(run.abandoned)
        return found

    @property
    def abandoned_by_provider(self) -> dict[str, dict[Hashable, str | None]]:
        """:attr:`abandoned`, per account (provider name)."""
        return {name: run.abandoned for name, run in self._runs.items()}

    @property
    def done(self) -> bool:
        """True once the batch has ended (all outcomes out, or cancelled)."""
        return self._done.is_set()

    # -- the tasks ---------------------------------------------------------------------------
    async def _run(self, send: MemoryObjectSendStream[Outcome]) -> None:
        """The router and one pump per account, in a task group of their own (so that
        ``cancel()`` stops them, not the task iterating the outcomes)."""
        try:
            async with send, anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._cancelled:
                    tg.cancel_scope.cancel()
                for name, run in self._runs.items():
                    tg.start_soon(self._pump, run, send.clone(), name=f"{__name__}.pump:{name}")
                tg.start_soon(self._route, send.clone(), name=f"{__name__}.router")
        except Exception as exc:  # a bug: surfaced to the consumer after the last outcome
            log.exception("internal error in map_many")
            self._fail(exc)

    async def _route(self, out: MemoryObjectSendStream[Outcome]) -> None:
        """Pull the input and hand each job to its account (see the module docstring)."""
        source = self._requests
        iterator: Iterator[Any] | AsyncIterator[Any]
        iterator = aiter(source) if isinstance(source, AsyncIterable) else iter(source)
        try:
            async with out:
                index = 0
                while True:
                    try:
                        if isinstance(iterator, AsyncIterator):
                            item = await anext(iterator, END)
                        else:
                            item = next(iterator, END)
                    except Exception as exc:
                        self._fail(exc)
                        log.error(
                            "the batch input raised %s; no more jobs are taken", type(exc).__name__
                        )
                        return
                    if item is END:
                        return
                    job = parse_item(item, index)
                    index += 1
                    if job is None:
                        self._fail(
                            ValidationError(
                                f"requests[{index - 1}]",
                                item,
                                "expected a VideoRequest or a (key, VideoRequest) pair",
                            )
                        )
                        return
                    key, request = job
                    name = self._routes.get(request.model)
                    if name is None:
                        await self._refuse(out, job, self._unknown_model(request.model), None)
                        continue
                    conflict = self._claim(key, request, name)
                    if conflict is not None:
                        await self._refuse(out, job, conflict, name)
                        continue
                    send = self._sends[name]
                    try:
                        try:
                            send.send_nowait(job)
                        except anyio.WouldBlock:
                            await send.send(job)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        self._release(key)  # that account's batch ended early (it failed)
                        log.error("the %s batch stopped early; no more jobs are taken", name)
                        return
        finally:
            for send in self._sends.values():
                send.close()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    async def _refuse(
        self,
        out: MemoryObjectSendStream[Outcome],
        job: Item,
        error: OmnividError,
        provider: str | None,
    ) -> None:
        """End ``job`` here, not submitted, with ``error``."""
        key, request = job
        now = _clock.now()
        self._counts["jobs"] += 1
        self._counts["failed"] += 1
        outcome = Outcome(key=key, request=request, error=error, queued_at=now, completed_at=now)
        self._events.emit("not_submitted", key, None, error=str(error), provider=provider)
        await out.send(outcome)

    def _unknown_model(self, model: str) -> ValidationError:
        given = ", ".join(self._clients)
        rule = f"no client given offers it (providers given: {given})"
        owner = next((p.name for p in list_providers() if model in p.models), None)
        if owner is not None and owner not in self._clients:
            rule += f"; it is a {owner} model: pass an AsyncClient({owner!r}) too"
        return ValidationError("model", model, rule)

    # -- keys across accounts ----------------------------------------------------------------
    def _claim(self, key: Hashable, request: VideoRequest, name: str) -> OmnividError | None:
        """With a journal and several accounts: a ``JournalConflictError`` if ``key`` belongs
        to another account (live in its batch, or in the journal under its provider), else
        None after noting the key as ``name``'s."""
        if self._seen is None or isinstance(key, bool) or not isinstance(key, str | int):
            return None  # no journal, one account, or a key the account's batch refuses
        jkey = str(key)
        if self._seen.add(jkey):  # it may have been routed before in this run: whose is it?
            live = self._live.get(jkey)
            owner: str | None = None
            if live is not None:
                owner = live[0]
            elif self._journal is not None:
                entry = self._journal.get(jkey)
                owner = entry.provider if entry is not None else None
            if owner is not None and owner != name:
                return JournalConflictError(
                    "key",
                    jkey,
                    f"already used for {owner} in this journal; keys must be unique across "
                    "providers (a journal keeps one entry per key)",
                    provider=name,
                    model=request.model,
                )
        live = self._live.get(jkey)
        self._live[jkey] = (name, 1) if live is None else (name, live[1] + 1)
        return None

    def _release(self, key: Hashable) -> None:
        """A job keyed ``key`` has its outcome (or was never handed over)."""
        if self._seen is None or isinstance(key, bool) or not isinstance(key, str | int):
            return
        jkey = str(key)
        live = self._live.get(jkey)
        if live is None:
            return
        if live[1] <= 1:
            del self._live[jkey]
        else:
            self._live[jkey] = (live[0], live[1] - 1)

    # -- the pumps ---------------------------------------------------------------------------
    async def _pump(self, run: MapRun, out: MemoryObjectSendStream[Outcome]) -> None:
        """Run one account's batch in this task and pass its outcomes on."""
        async with out:
            try:
                async with run:
                    async for outcome in run:
                        self._release(outcome.key)
                        try:
                            out.send_nowait(outcome)
                        except anyio.WouldBlock:
                            await out.send(outcome)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # nobody reads the outcomes any more: the block is being left
            except Exception as exc:  # the account's batch failed (a bug, a broken journal)
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Keep the first failure, raised after the last outcome."""
        if self._failure is None:
            self._failure = exc
        else:
            log.error("another batch failure after the first: %r", exc)

    async def _close_journal(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None and self._owns_journal:
            if isinstance(journal, SharedJournal):
                with anyio.CancelScope(shield=True):
                    await journal.aclose()
            else:
                journal.close()
        elif journal is not None and not journal.closed:
            journal.flush()
