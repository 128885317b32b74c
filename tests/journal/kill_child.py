"""The process the SIGKILL test kills: ``python kill_child.py BASE_URL API_KEY JOURNAL N``.

Runs N keyed jobs through ``client.map`` with the journal (no resubmission, so every task the
simulator creates must come from a distinct first submit), prints ``ready`` once the client
is open and ``done N`` with the number of outcomes at the end.
"""

from __future__ import annotations

import sys

import anyio

import omnivid


async def main(base_url: str, api_key: str, journal: str, n: int) -> None:
    client = omnivid.AsyncClient(
        "apimart",
        base_url=base_url,
        api_key=api_key,
        time_scale=0.001,
        retry=omnivid.RetryPolicy(base_delay=0.001, max_delay=0.005),
    )
    jobs = (
        (f"k{i}", omnivid.VideoRequest(model="gemini-omni-flash-preview", prompt=f"kill {i}"))
        for i in range(n)
    )
    async with client:
        print("ready", flush=True)
        async with client.map(jobs, journal=journal, max_in_flight=8, resubmit=None) as out:
            count = sum([1 async for _ in out])
    print(f"done {count}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
