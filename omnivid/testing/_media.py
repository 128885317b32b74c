"""The small, genuinely playable MP4 files that the simulator serves as generated videos.

The video is built in code, so the package ships no binary: an H.264 Baseline stream whose
macroblocks are all ``I_PCM`` (raw samples, no entropy coding to get wrong), wrapped in a
standard ``ftyp`` + ``moov`` + ``mdat`` MP4. Any decoder (ffmpeg, browsers) plays it: a 32x32
picture, three one-second frames in three colours, about 5 KiB. Each task's file carries the
task id in a trailing ``free`` box, so every result has its own bytes and ETag.
"""

from __future__ import annotations

import functools
import struct

WIDTH = 32
HEIGHT = 32
FRAME_SECONDS = 1
# (Y, Cb, Cr) per frame: red, green, blue. PCM samples must not be 0 in older decoders.
_FRAME_COLOURS: tuple[tuple[int, int, int], ...] = ((81, 90, 240), (145, 54, 34), (41, 240, 110))
_TIMESCALE = 1000


class _BitWriter:
    """Writes the bit fields and Exp-Golomb codes of H.264 syntax elements."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, bits: int, value: int) -> None:
        self._bits.extend((value >> shift) & 1 for shift in range(bits - 1, -1, -1))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self._bits) % 8:
            self._bits.append(0)

    def raw(self, data: bytes) -> None:
        assert len(self._bits) % 8 == 0
        for byte in data:
            self.u(8, byte)

    def trailing(self) -> bytes:
        self._bits.append(1)
        self.align_zero()
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for bit in self._bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)


def _nal(header: int, rbsp: bytes) -> bytes:
    """A NAL unit: header byte plus the RBSP with emulation-prevention bytes inserted."""
    out = bytearray([header])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps() -> bytes:
    w = _BitWriter()
    w.u(8, 66)  # profile_idc: Baseline
    w.u(8, 0xC0)  # constraint_set0/1
    w.u(8, 10)  # level_idc 1.0
    w.ue(0)  # seq_parameter_set_id
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(2)  # pic_order_cnt_type
    w.ue(0)  # max_num_ref_frames
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(WIDTH // 16 - 1)
    w.ue(HEIGHT // 16 - 1)
    w.u(1, 1)  # frame_mbs_only_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, 0)  # frame_cropping_flag
    w.u(1, 0)  # vui_parameters_present_flag
    return _nal(0x67, w.trailing())


def _pps() -> bytes:
    w = _BitWriter()
    w.ue(0)  # pic_parameter_set_id
    w.ue(0)  # seq_parameter_set_id
    w.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    w.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    w.ue(0)  # num_slice_groups_minus1
    w.ue(0)  # num_ref_idx_l0_default_active_minus1
    w.ue(0)  # num_ref_idx_l1_default_active_minus1
    w.u(1, 0)  # weighted_pred_flag
    w.u(2, 0)  # weighted_bipred_idc
    w.se(0)  # pic_init_qp_minus26
    w.se(0)  # pic_init_qs_minus26
    w.se(0)  # chroma_qp_index_offset
    w.u(1, 0)  # deblocking_filter_control_present_flag
    w.u(1, 0)  # constrained_intra_pred_flag
    w.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(0x68, w.trailing())


def _idr_slice(index: int, colour: tuple[int, int, int]) -> bytes:
    w = _BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(7)  # slice_type: I (all slices)
    w.ue(0)  # pic_parameter_set_id
    w.u(4, 0)  # frame_num
    w.ue(index % 2)  # idr_pic_id: consecutive IDR pictures differ
    w.u(1, 0)  # no_output_of_prior_pics_flag
    w.u(1, 0)  # long_term_reference_flag
    w.se(0)  # slice_qp_delta
    luma, cb, cr = colour
    samples = bytes([luma]) * 256 + bytes([cb]) * 64 + bytes([cr]) * 64
    for _ in range((WIDTH // 16) * (HEIGHT // 16)):
        w.ue(25)  # mb_type: I_PCM
        w.align_zero()  # pcm_alignment_zero_bit
        w.raw(samples)
    return _nal(0x65, w.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _moov(sample_sizes: list[int], mdat_offset: int, sps: bytes, pps: bytes) -> bytes:
    count = len(sample_sizes)
    duration = count * FRAME_SECONDS * _TIMESCALE
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, _TIMESCALE, duration),
        struct.pack(">IH", 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", WIDTH << 16, HEIGHT << 16),
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, duration, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"VideoHandler\x00")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HHII", WIDTH, HEIGHT, 0x480000, 0x480000),
        struct.pack(">IH", 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, count, FRAME_SECONDS * _TIMESCALE)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1)),
        _full_box(b"stsz", 0, 0, struct.pack(f">II{count}I", 0, count, *sample_sizes)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, mdat_offset)),
    )
    minf = _box(b"minf", vmhd, dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return _box(b"moov", mvhd, trak)


@functools.cache
def base_mp4() -> bytes:
    """The shared playable MP4 (``ftyp`` + ``moov`` + ``mdat``), built once."""
    sps, pps = _sps(), _pps()
    samples = []
    for index, colour in enumerate(_FRAME_COLOURS):
        nal = _idr_slice(index, colour)
        samples.append(struct.pack(">I", len(nal)) + nal)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    sizes = [len(sample) for sample in samples]
    moov_size = len(_moov(sizes, 0, sps, pps))
    moov = _moov(sizes, len(ftyp) + moov_size + 8, sps, pps)
    return ftyp + moov + _box(b"mdat", *samples)


def video_bytes(tag: str) -> bytes:
    """The MP4 for one result: the shared movie plus a ``free`` box naming ``tag``."""
    return base_mp4() + _box(b"free", b"omnivid-sim:" + tag.encode())


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, bytes]]:
    """Top-level ``(type, payload)`` pairs of an MP4 byte string (for tests and sanity checks)."""
    end = len(data) if end is None else end
    boxes = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"truncated box header at {pos}")
        (size,) = struct.unpack_from(">I", data, pos)
        if size < 8 or pos + size > end:
            raise ValueError(f"bad box size {size} at {pos}")
        boxes.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + size]))
        pos += size
    return boxes
