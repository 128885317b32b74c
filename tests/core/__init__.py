"""Tests of the core SDK: models, providers, transport, client, downloads."""
