"""Reading strings from callers and networks without side effects: media references and hosts.

Every function here is pure: nothing touches the filesystem or the network, so a request built
from untrusted data can be classified and checked safely. The client's rules
(``omnivid.providers``) and the simulator (``omnivid.testing``) both use them, so the two agree.

* :func:`media_source` says what an ``images``/``videos`` entry is: an http(s) URL, a data URL,
  bare base64 or a local path (decided by its text alone).
* :func:`decode_data_url` and :func:`decode_base64` decode inline media strictly;
  :func:`sniff_mime` names the bytes by their magic number.
* :func:`classify_host` normalises a URL's host the way browsers and ``inet_aton`` read it
  (``2130706433``, ``127.1``, ``0x7f.1``, ``[::ffff:127.0.0.1]``, ``%3127.0.0.1``, full-width
  digits) and says whether it is public, loopback or private.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from typing import Literal
from urllib.parse import unquote, urlsplit

from attrs import frozen

__all__ = [
    "IMAGE_MIMES",
    "DataURL",
    "HostInfo",
    "MediaSource",
    "classify_host",
    "decode_base64",
    "decode_data_url",
    "image_problem",
    "media_source",
    "normalise_mime",
    "sniff_mime",
    "split_url",
    "url_text_problem",
    "video_data_problem",
]

IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/webp"})
"""The image types both providers document (EvoLink: png, jpeg, webp)."""

_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

MediaSource = Literal["url", "data", "base64", "path", "other"]

_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/\s]+={0,2}\s*")
_WHITESPACE = re.compile(r"\s+")
_MIN_BARE_BASE64 = 64
"""Shorter strings count as bare base64 only when they decode to a known media type: a short
name such as ``cats`` is more likely a file than base64."""
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def sniff_mime(head: bytes) -> str | None:
    """The media type of some bytes from their first 16: JPEG, PNG, WebP, GIF, MP4/MOV or WebM;
    None when unrecognised."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def normalise_mime(mime: str) -> str:
    """A media type in lower case, with ``image/jpg`` read as ``image/jpeg``."""
    lowered = mime.strip().lower()
    return _MIME_ALIASES.get(lowered, lowered)


def decode_base64(text: str) -> bytes | None:
    """The bytes of standard base64 ``text`` (whitespace ignored, padding required), or None
    when it is not base64 at all."""
    if not _BASE64_TEXT.fullmatch(text):
        return None
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        return None


@frozen
class DataURL:
    """A parsed ``data:`` URL: its media type (lower case, ``image/jpg`` as ``image/jpeg``),
    whether it declares ``;base64``, and its payload text."""

    mime: str
    is_base64: bool
    payload: str


def decode_data_url(value: str) -> DataURL | None:
    """``value`` as a data URL, or None when it is not shaped like one
    (``data:<type>/<subtype>[;param]*[;base64],<payload>``)."""
    if value[:5].lower() != "data:":
        return None
    header, comma, payload = value[5:].partition(",")
    if not comma:
        return None
    mime, *params = header.split(";")
    if "/" not in mime:
        return None
    is_base64 = bool(params) and params[-1].strip().lower() == "base64"
    return DataURL(normalise_mime(mime), is_base64, payload)


def _bare_base64(value: str) -> bytes | None:
    data = decode_base64(value)
    if data is None or not data:
        return None
    if len(value) >= _MIN_BARE_BASE64 or sniff_mime(data[:16]) is not None:
        return data
    return None


def media_source(value: str) -> MediaSource:
    """What an ``images``/``videos`` entry is, from its text alone: ``url`` (http/https),
    ``data`` (a ``data:`` URL, well formed or not), ``base64`` (bare base64: at least 64
    characters, or fewer decoding to a known media type), ``other`` (another ``scheme://``) or
    ``path`` (anything else: a local file path). Never touches the filesystem."""
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return "url"
    if lowered.startswith("data:"):
        return "data"
    if "://" in value:
        return "other"
    if _bare_base64(value) is not None:
        return "base64"
    return "path"


def image_problem(value: str, allowed: frozenset[str] = IMAGE_MIMES) -> str | None:
    """Why an inline image (a data URL or bare base64) is not one of ``allowed``, checked by
    its bytes; None when it is fine."""
    names = ", ".join(sorted(m.split("/")[1].upper() for m in allowed))
    parsed = decode_data_url(value)
    if parsed is not None:
        if not parsed.is_base64:
            return "a data URL must declare ;base64 (data:image/png;base64,...)"
        if parsed.mime not in allowed:
            return f"image type {parsed.mime} is not accepted; use {names}"
        data = decode_base64(parsed.payload)
        if not data:
            return "the data URL's payload is not valid base64 image data"
        found = sniff_mime(data[:16])
        if found != parsed.mime:
            what = found or "unrecognised content"
            return f"the data URL declares {parsed.mime} but holds {what}"
        return None
    if value[:5].lower() == "data:":
        return "is not a valid data URL (data:image/png;base64,...)"
    bare = _bare_base64(value)
    if bare is None:
        return "is not valid base64"
    found = sniff_mime(bare[:16])
    if found not in allowed:
        return f"base64 data is {found or 'unrecognised content'}, not {names}"
    return None


def video_data_problem(value: str) -> str | None:
    """Why a data URL is not inline video: any ``video/...`` subtype is accepted (the seeds
    say ``data:video/...``), declared ``;base64``, with a non-empty valid payload."""
    parsed = decode_data_url(value)
    if parsed is None:
        return "is not a valid data URL (data:video/mp4;base64,...)"
    if not parsed.mime.startswith("video/"):
        return f"video type {parsed.mime} is not accepted; use a data:video/... URL"
    if not parsed.is_base64:
        return "a data URL must declare ;base64 (data:video/mp4;base64,...)"
    if not decode_base64(parsed.payload):
        return "the data URL's payload is not valid base64 data"
    return None


def url_text_problem(url: str) -> str | None:
    """Why a URL's text cannot be sent as it is: whitespace, control characters or a backslash
    (which browsers read as ``/``, so the host another parser sees may differ)."""
    if _URL_FORBIDDEN.search(url):
        return "contains whitespace, a control character or a backslash"
    return None


HostKind = Literal["public", "loopback", "private", "invalid"]


@frozen
class HostInfo:
    """A URL host, normalised: its ``kind``, its IP ``address`` when it is one (for an IPv6
    address embedding an IPv4 one that decides the kind, the IPv4 one), and its ``name``."""

    kind: HostKind
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    name: str = ""


_LOCAL_SUFFIXES = (".local", ".internal", ".localdomain", ".home.arpa")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def _ipv4_number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)  # ValueError on 8 or 9: not an address
    return int(label, 10)


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as an IPv4 address in any ``inet_aton`` spelling (``127.1``, ``0x7f.1``,
    ``2130706433``, ``0177.0.0.1``); None when its last label is not a number (a name);
    ``ValueError`` when it looks like an address but is not one."""
    labels = host.split(".")
    if not _NUMBER.fullmatch(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER.fullmatch(label) for label in labels):
        raise ValueError(host)
    numbers = [_ipv4_number(label) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(host)
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256 ** (5 - len(numbers)) + last)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address.packed[:12] == bytes(12) and int(address) > 1:  # IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(address.packed[12:])
    return None


def classify_host(raw: str) -> HostInfo:
    """Normalise a URL host (``urlsplit(url).hostname``) as browsers and ``inet_aton`` read it,
    then classify it: ``loopback`` (``localhost``, ``*.localhost``, 127/8, ``::1``, their
    IPv4-mapped forms), ``private`` (any other address that is not global, multicast, and
    ``.local``/``.internal`` names), ``invalid`` (empty or a malformed address) or ``public``."""
    host = unicodedata.normalize("NFKC", unquote(raw)).translate(_DOTS).lower().rstrip(".")
    if not host or any(c in host for c in "/\\@ ") or not host.isprintable():
        return HostInfo("invalid", name=host)
    if host == "localhost" or host.endswith(".localhost"):
        return HostInfo("loopback", name=host)
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.IPv6Address(host) if ":" in host else _ipv4(host)
    except ValueError:
        return HostInfo("invalid", name=host)
    if address is None:
        return HostInfo("private" if host.endswith(_LOCAL_SUFFIXES) else "public", name=host)
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and (v4 := _embedded_v4(address)) is not None:
        candidates.insert(0, v4)  # the IPv4 address it reaches is the one to report
    for a in candidates:
        if a.is_loopback:
            return HostInfo("loopback", a, host)
    for a in candidates:
        if not a.is_global or a.is_multicast:
            return HostInfo("private", a, host)
    return HostInfo("public", address, host)


def split_url(url: str) -> tuple[str, str, HostInfo]:
    """A URL's scheme (lower case), its host as written, and the host classified (see
    :func:`classify_host`); ``ValueError`` when the URL cannot be read the same way by every
    parser: whitespace, control characters, a backslash, bad brackets or a bad port."""
    problem = url_text_problem(url)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(url)
    raw = parts.hostname or ""
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    return parts.scheme.lower(), raw, classify_host(raw)
