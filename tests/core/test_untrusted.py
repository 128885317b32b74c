"""Untrusted input: requests from network data that cannot name local files, and the pure
readers of media references and URL hosts that the client and the simulator share."""

from __future__ import annotations

import base64
import builtins
import os
import pathlib
from typing import Any

import pytest

import omnivid
from omnivid._untrusted import classify_host, media_source
from omnivid.errors import ValidationError

GEMINI = "gemini-omni-flash-preview"
R2V = "gemini-omni-flash-reference-to-video"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
# a path that is also valid base64 text (64+ characters of the alphabet, padded length)
BASE64_SHAPED_PATH = "/etc/" + "/" * 55 + "hostname"


@pytest.fixture
def no_filesystem(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every open/stat/exists/read of any path, recorded (and failing the test at the end)."""
    seen: list[str] = []

    def spy(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.append(str(args[0]) if args else "?")
            return real(*args, **kwargs)

        return call

    for owner, name in [(builtins, "open"), (os, "stat"), (os, "open")]:
        monkeypatch.setattr(owner, name, spy(getattr(owner, name)))
    for name in ("open", "read_bytes", "stat", "exists"):
        monkeypatch.setattr(pathlib.Path, name, spy(getattr(pathlib.Path, name)))
    return seen


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "clip.mp4", "./clip.mp4", "~/clip.mp4", "../../secret.png", "file:/x.png"],
)
@pytest.mark.parametrize("field", ["images", "videos"])
def test_from_dict_refuses_local_paths_by_their_text(
    path: str, field: str, no_filesystem: list[str]
) -> None:
    """allow_local_files=False refuses a path without looking it up (same answer whether it
    exists or not), naming the entry."""
    data = {"model": GEMINI, "prompt": "p", field: ["https://example.com/a", path]}
    with pytest.raises(ValidationError) as caught:
        omnivid.VideoRequest.from_dict(data, allow_local_files=False)
    assert caught.value.field == f"{field}[1]" and caught.value.value == path
    assert "local file paths are not accepted" in caught.value.rule
    assert no_filesystem == []


def test_from_dict_keeps_urls_data_urls_and_base64(no_filesystem: list[str]) -> None:
    """Remote and inline media pass; the default (trusted plain form) still takes paths."""
    image = base64.b64encode(PNG).decode()
    data = {
        "model": R2V,
        "prompt": "p",
        "images": ["https://example.com/a.png", f"data:image/png;base64,{image}", image],
    }
    request = omnivid.VideoRequest.from_dict(data, allow_local_files=False)
    assert request.images == tuple(data["images"])
    assert omnivid.VideoRequest.from_dict({"model": R2V, "images": ["a.png"]}).images == ("a.png",)
    assert no_filesystem == []


@pytest.mark.parametrize(
    ("provider", "model", "field"), [("evolink", R2V, "images"), ("apimart", GEMINI, "videos")]
)
def test_base64_shaped_paths_are_never_read(
    provider: str, model: str, field: str, no_filesystem: list[str]
) -> None:
    """A path that reads as base64 passes from_dict as inline data, and is then refused as
    data, never opened as a file, even by a model that takes local files."""
    request = omnivid.VideoRequest.from_dict(
        {"model": model, "prompt": "p", field: [BASE64_SHAPED_PATH]}, allow_local_files=False
    )
    client = omnivid.AsyncClient(provider, api_key="k")
    with pytest.raises(ValidationError) as caught:
        client.build_body(request)
    assert caught.value.field == f"{field}[0]"
    assert no_filesystem == []


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("https://example.com/a.png", "url"),
        ("HTTP://example.com/a.png", "url"),
        ("data:image/png;base64,AAAA", "data"),
        ("DATA:broken", "data"),
        ("ftp://example.com/a.png", "other"),
        (base64.b64encode(PNG).decode(), "base64"),
        ("A" * 96, "base64"),
        ("cats", "path"),
        ("photo.png", "path"),
        ("/home/me/photo", "path"),
        (BASE64_SHAPED_PATH, "base64"),
    ],
)
def test_media_source(value: str, source: str) -> None:
    """What an entry is, from its text alone."""
    assert media_source(value) == source


@pytest.mark.parametrize(
    ("host", "kind", "address"),
    [
        ("2130706433", "loopback", "127.0.0.1"),
        ("127.1", "loopback", "127.0.0.1"),
        ("0x7f.1", "loopback", "127.0.0.1"),
        ("0x7F000001", "loopback", "127.0.0.1"),
        ("0177.0.0.01", "loopback", "127.0.0.1"),
        ("::ffff:127.0.0.1", "loopback", "127.0.0.1"),
        ("::ffff:7f00:1", "loopback", "127.0.0.1"),
        ("::1", "loopback", "::1"),
        ("localhost", "loopback", None),
        ("api.localhost.", "loopback", None),
        ("%31%32%37.0.0.1", "loopback", "127.0.0.1"),
        ("１２７。０。０。１", "loopback", "127.0.0.1"),
        ("10.1", "private", "10.0.0.1"),
        ("192.168.1.1", "private", "192.168.1.1"),
        ("169.254.169.254", "private", "169.254.169.254"),
        ("100.64.0.1", "private", "100.64.0.1"),
        ("0.0.0.0", "private", "0.0.0.0"),
        ("224.0.0.1", "private", "224.0.0.1"),
        ("2002:7f00:1::", "loopback", "127.0.0.1"),  # 6to4 around 127.0.0.1
        ("fd00::1", "private", "fd00::1"),
        ("printer.local", "private", None),
        ("8.8.8.8", "public", "8.8.8.8"),
        ("134744072", "public", "8.8.8.8"),
        ("hooks.example.com", "public", None),
        ("example.com.", "public", None),
        ("", "invalid", None),
        ("256.1.1.1", "invalid", None),
        ("1.2.3.4.5", "invalid", None),
        ("08.1.1.1", "invalid", None),
        ("example.123", "invalid", None),
        ("a%2fb.example.com", "invalid", None),
    ],
)
def test_classify_host(host: str, kind: str, address: str | None) -> None:
    """Hosts normalised as browsers and inet_aton read them, then classified."""
    info = classify_host(host)
    assert info.kind == kind
    assert (str(info.address) if info.address is not None else None) == address
