"""Embedding omnivid in web apps: secure EvoLink callbacks with a polling fallback.

EvoLink calls a ``callback_url`` when a task completes, fails or is cancelled, but signs
nothing. So the proof is in the URL: each submit gets its own unguessable token (256 bits),
``https://app.example.com/omnivid/callbacks/<token>``, bound to the task id the submit returns.
A callback counts only if its token matches that task (constant-time comparison), and even
then its body is not trusted: the task is read back with a ``GET`` and only a terminal
read-back wakes the waiters (``client.wait``, ``watch``, ``map``) at once. Polling continues
at a long interval (``CallbackReceiver.fallback_poll``), so a lost callback only delays a
result. Duplicate callbacks are answered 200 without another read-back; a wrong token, a token
of another task, an unknown task or a malformed body gets a 4xx and changes nothing; read-backs
are bounded per token (one at a time, none again within ``readback_interval``); replies never
echo a secret.

FastAPI::

    from . import CallbackReceiver
    from .fastapi import callback_router

    receiver = CallbackReceiver("https://app.example.com/omnivid/callbacks")
    app.include_router(callback_router(receiver))      # POST /omnivid/callbacks/{token}
    # in the lifespan:
    async with omnivid.AsyncClient("evolink", callbacks=receiver) as client: ...

aiohttp::

    from .aiohttp import callback_app

    app.add_subapp("/omnivid/callbacks/", callback_app(receiver))

Call :func:`redact_access_logs` once so access logs show ``<redacted>`` instead of tokens.

Deployment: tokens live in the process that submitted the task (:class:`MemoryTokenStore`).
With several processes, route callbacks back to the submitting one (sticky routing on a path
prefix per process, e.g. ``public_url=https://app.example.com/cb/worker-3``) or give every
receiver a shared :class:`TokenStore` (e.g. over Redis); a process that did not submit the
task then verifies it and answers 200, and the submitter's fallback poll picks the result up.

:mod:`omnivid.integrations.fastapi` needs FastAPI (the ``dev`` extra); this package does not.
"""

from __future__ import annotations

from ._callbacks import (
    DEFAULT_FALLBACK_POLL,
    CallbackReceiver,
    CallbackReply,
    Recovered,
    token_digest,
)
from ._redact import RedactTokens, redact, redact_access_logs
from ._store import MemoryTokenStore, TokenRecord, TokenStore

__all__ = [
    "DEFAULT_FALLBACK_POLL",
    "CallbackReceiver",
    "CallbackReply",
    "MemoryTokenStore",
    "Recovered",
    "RedactTokens",
    "TokenRecord",
    "TokenStore",
    "redact",
    "redact_access_logs",
    "token_digest",
]
