"""Helpers for the PostgreSQL tests: the server to use, databases made and dropped for them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import omnivid
from omnivid.journal._postgres import PostgresJournal
from omnivid.testing import Simulator

OpenJournal = Callable[..., Awaitable[PostgresJournal]]
"""The ``open_journal`` fixture: opens a journal on the test's batch."""

ADMIN_URL = os.environ.get(
    "OMNIVID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HOW = (
    "start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set "
    "OMNIVID_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB (a user that may CREATE DATABASE)"
)


def with_db(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname``."""
    return make_conninfo(url, dbname=dbname)


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"PostgreSQL not reachable at {ADMIN_URL} ({first}): {HOW}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def as_url(conninfo: str) -> str:
    """``conninfo`` (``key=value`` pairs or a URL) as a ``postgresql://`` URL, the form users
    pass as ``journal=`` and ``--journal``."""
    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user", "")), safe="")
    password = f":{quote(str(parts['password']), safe='')}" if parts.get("password") else ""
    auth = f"{user}{password}@" if user else ""
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    return f"postgresql://{auth}{host}:{port}/{quote(str(parts.get('dbname', '')), safe='')}"


def create_database() -> str:
    """A new empty database on the server; its URL."""
    name = f"omnivid_test_{secrets.token_hex(5)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_db(ADMIN_URL, name)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names (its connections too)."""
    name = conninfo_to_dict(url)["dbname"]
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def client(sim: Simulator) -> omnivid.AsyncClient:
    """An unopened client on ``sim`` (its time scale, millisecond retries)."""
    return omnivid.AsyncClient(
        "apimart",
        api_key=sim.api_key,
        base_url=sim.base_url("apimart"),
        retry=omnivid.RetryPolicy(base_delay=0.001, max_delay=0.005, retry_after_cap=2.0),
        time_scale=0.001,
    )
