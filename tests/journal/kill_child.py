"""The process the SIGKILL tests kill: ``python kill_child.py BASE_URL API_KEY JOURNAL N [CAP]``.

Runs N keyed jobs through ``client.map`` with the journal (no resubmission, so every task the
simulator creates must come from a distinct first submit), prints ``ready`` once the client
is open and ``done N`` with the number of outcomes at the end. With ``CAP``, the jobs are
Omni-Flash-Ext requests (0.4 each) under ``max_cost=CAP``; without, gemini-omni-flash-preview
requests and no cap.
"""

from __future__ import annotations

import sys

import anyio

import omnivid


def _request(i: int, capped: bool) -> omnivid.VideoRequest:
    if capped:
        return omnivid.VideoRequest(model="Omni-Flash-Ext", prompt=f"capped {i}", duration=6)
    return omnivid.VideoRequest(model="gemini-omni-flash-preview", prompt=f"kill {i}")


async def main(base_url: str, api_key: str, journal: str, n: int, cap: float | None) -> None:
    client = omnivid.AsyncClient(
        "apimart",
        base_url=base_url,
        api_key=api_key,
        time_scale=0.001,
        retry=omnivid.RetryPolicy(base_delay=0.001, max_delay=0.005),
    )
    jobs = ((f"k{i}", _request(i, cap is not None)) for i in range(n))
    async with client:
        print("ready", flush=True)
        async with client.map(
            jobs, journal=journal, max_in_flight=8, resubmit=None, max_cost=cap
        ) as out:
            count = sum([1 async for _ in out])
    print(f"done {count}", flush=True)


if __name__ == "__main__":
    cap = float(sys.argv[5]) if len(sys.argv) > 5 else None
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), cap)
