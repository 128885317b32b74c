"""omnivid's benchmarks: omnivid against bare aiohttp and naive batch code, side by side.

Run ``python -m benchmarks`` (all) or ``python -m benchmarks b1 b3`` (some); ``--quick`` runs
tiny sizes (the smoke test uses it). Each benchmark starts the simulator in its own process on
loopback (``python -m omnivid.testing --port 0``), runs every contender against a fresh one,
prints a markdown table and writes ``benchmarks/results/latest.json`` (``quick.json`` with
``--quick``) and ``latest.md``. ``benchmarks/RESULTS.md`` holds the measured tables.

* B1 ``b1_throughput``: 5,000 instant jobs, omnivid ``map`` vs a raw aiohttp loop.
* B2 ``b2_polling``: polls per task and completion delay vs fixed-interval pollers.
* B3 ``b3_rate_limit``: share of a server rate limit reached, and 429s, vs a semaphore loop.
* B4 ``b4_scale``: peak RSS at 10,000 and 100,000 jobs from a generator.
* B4-cli ``b4_cli``: the same for ``omnivid batch`` over 10,000 and 100,000 lines.
* B5 ``b5_journal``: B1 with and without the SQLite journal.
* B6 ``b6_recovery``: recovery after 429 storms: the adaptive rate before and after, and a
  semaphore loop.
* B7 ``b7_expiry``: result URLs living 5 s in a 20,000-job ``omnivid batch``: 0 expired, the
  download backlog over time, vs a map with 4 downloads at a time.
"""
