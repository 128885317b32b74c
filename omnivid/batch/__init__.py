"""The batch scheduler behind ``client.map`` and ``client.open_batch``.

* :mod:`._handles`: the public objects, :class:`~omnivid.MapRun` and :class:`~omnivid.Batch`;
* :mod:`._multi`: :func:`~omnivid.map_many`, one batch over several accounts (one ``MapRun``
  each, fed by a router, their outcomes joined);
* :mod:`._engine`: the engine, one module per responsibility (feed, submit, poll, end), with
  a job's state machine drawn in :mod:`._engine.engine`;
* :mod:`._job` (a job's state, the batch's settings), :mod:`._poller` (the schedule of due
  times and the workers), :mod:`._limiter` (slots and window), :mod:`._budget`
  (``max_cost``), :mod:`._policy` (resubmits, cost estimates), :mod:`._events`,
  :mod:`._outcome`;
* :mod:`._journal_link`: how a batch uses any :class:`~omnivid.journal.JournalBackend`;
* :mod:`._client`: what a batch needs from a client (:class:`~._client.BatchClient`).
"""
