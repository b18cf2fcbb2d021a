#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers into tests/fuzz/corpus/<target>/ (committed).

Seeds are small valid inputs plus edge cases; libFuzzer mutates from there. The input formats are
described at the top of fuzz_frame_decoder.cpp and fuzz_codecs.cpp. Re-running this rewrites the
seeds it owns (named seed-*) and leaves any other file (e.g. a crash reproducer) alone.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# fuzz_frame_decoder operations and record types (src/channel/layout.hpp).
APPEND, SCRIBBLE, SET_WRITE_POS, ADVANCE, DRAIN = range(5)
HELLO, RESULT_START, RESULT_DATA = 0, 1, 2  # type byte t < 0xf0 means record type 16 + t % 3


def capacity(log2_over_64):
    return bytes([log2_over_64])


def append(type_byte, job_id, body):
    return bytes([APPEND, type_byte, job_id]) + struct.pack("<H", len(body)) + body


def hello(version=1, pid=4242):
    return append(HELLO, 0, struct.pack("<Ii", version, pid))


def result(job_id, status, payload, chunk=40):
    out = append(RESULT_START, job_id, struct.pack("<IIQ", status, 0, len(payload)))
    for i in range(0, len(payload), chunk):
        out += append(RESULT_DATA, job_id, payload[i : i + chunk])
    return out


def record_bytes(type_, length, job_id, body=b""):
    """A raw RecordHeader (+ body) as a worker would lay it out."""
    return struct.pack("<IIQ", type_, length, job_id) + body


def scribble(offset, data):
    return bytes([SCRIBBLE]) + struct.pack("<HB", offset, len(data)) + data


def set_write_pos(value):
    return bytes([SET_WRITE_POS]) + struct.pack("<Q", value)


def advance(delta):
    return bytes([ADVANCE]) + struct.pack("<H", delta)


DRAIN_OP = bytes([DRAIN])

frame_seeds = {
    # Well-formed streams through the real writer.
    "hello": capacity(4) + hello() + DRAIN_OP,
    "hello-result": capacity(4) + hello() + DRAIN_OP + result(1, 0, b"ok:42") + DRAIN_OP,
    "error-result": capacity(4) + hello() + result(2, 1, b"handler threw: bad input") + DRAIN_OP,
    "empty-result": capacity(2) + hello() + result(3, 0, b"") + DRAIN_OP,
    # Many records in a 64-byte ring: wraps around the end several times.
    "wrap": capacity(0)
    + hello()
    + DRAIN_OP
    + b"".join(result(i, 0, bytes(range(i, i + 12)), chunk=8) + DRAIN_OP for i in range(1, 6)),
    "max-body": capacity(2) + append(RESULT_DATA, 7, bytes(256 // 4 - 16)) + DRAIN_OP,
    # Corruptions the reader must report.
    "unknown-type": capacity(3) + append(0xF5, 1, b"abcdefgh") + DRAIN_OP,
    "host-record": capacity(3) + append(0xFF, 1, b"") + DRAIN_OP,
    "write-pos-backwards": capacity(3) + hello() + DRAIN_OP + set_write_pos(8) + DRAIN_OP,
    "write-pos-huge": capacity(3) + set_write_pos(2**64 - 8) + DRAIN_OP,
    "partial-header": capacity(3) + advance(8) + DRAIN_OP,
    "partial-body": capacity(3)
    + scribble(0, record_bytes(17, 16, 1, b"\0" * 8))
    + advance(24)
    + DRAIN_OP,
    "oversized-length": capacity(3)
    + scribble(0, record_bytes(18, 0xFFFFFFFF, 1))
    + advance(16)
    + DRAIN_OP,
    "zeros-before-record": capacity(0)
    + scribble(56, record_bytes(18, 4, 1, b"wxyz"))
    + set_write_pos(56)
    + DRAIN_OP,
    "overfull": capacity(0) + advance(72) + DRAIN_OP,
    "scribble-after-publish": capacity(3)
    + hello()
    + scribble(4, struct.pack("<I", 0xFFFF))
    + DRAIN_OP,
}

# fuzz_codecs: first byte picks the codec (0 Bytes, 1 string, 2 trivially copyable, 3 azure
# request, 4 azure response).
request_options = {
    "content_type": "audio/wav",
    "locales": ["en-US", "de-DE"],
    "api": "auto",
    "format": "detailed",
    "profanity": "masked",
    "diarization": True,
    "max_speakers": 3,
    "channels": [0, 1],
    "attempt_timeout_ms": 5000,
    "total_timeout_ms": 20000,
}


def azure_request(options, audio=b"RIFF\x24\0\0\0WAVEfmt "):
    text = json.dumps(options).encode()
    return bytes([3]) + struct.pack("<I", len(text)) + text + audio


response = {
    "api": "fast",
    "status": "Success",
    "display_text": "Hello world.",
    "offset_ticks": 100000,
    "duration_ticks": 12300000,
    "audio_duration_ms": 1230,
    "nbest": [
        {
            "confidence": 0.93,
            "lexical": "hello world",
            "itn": "hello world",
            "masked_itn": "hello world",
            "display": "Hello world.",
        }
    ],
    "phrases": [
        {
            "text": "Hello world.",
            "offset_ms": 10,
            "duration_ms": 1220,
            "locale": "en-US",
            "confidence": 0.9,
            "speaker": 1,
            "channel": 0,
            "words": [{"text": "Hello", "offset_ms": 10, "duration_ms": 400}],
        }
    ],
    "request_id": "r-1",
    "http_status": 200,
    "attempts": 1,
    "total_ms": 812.5,
    "last_attempt_ms": 800.25,
    "backoff_ms": 0.0,
}

codec_seeds = {
    "bytes": bytes([0]) + b"\x00\x01\x02\xff payload",
    "bytes-empty": bytes([0]),
    "string": bytes([1]) + "h\u00e9llo \u4e16\u754c".encode(),
    "trivial": bytes([2]) + struct.pack("<qdIf", -7, 2.5, 0xDEADBEEF, 0.125),
    "trivial-short": bytes([2]) + b"\x01\x02\x03",
    "azure-request": azure_request(request_options),
    "azure-request-no-audio": azure_request(dict(request_options, api="short", channels=[]), b""),
    "azure-request-bad-enum": azure_request(dict(request_options, format="verbose")),
    # A number out of an integer's range: converting it was undefined behaviour before the codec
    # checked (found with this fuzzer's harness).
    "azure-request-float-speakers": azure_request(dict(request_options, max_speakers=1e300)),
    "azure-request-float-channel": azure_request(dict(request_options, channels=[0, -1e19])),
    "azure-request-bad-length": bytes([3]) + struct.pack("<I", 0xFFFFFFFF) + b"{}",
    "azure-response": bytes([4]) + json.dumps(response).encode(),
    "azure-response-minimal": bytes([4])
    + json.dumps(dict(response, nbest=[], phrases=[], display_text="")).encode(),
    "azure-response-escapes": bytes([4])
    + json.dumps(dict(response, display_text="\u00e9\ud83d\ude00\\\"\n")).encode(),
    "azure-response-float-status": bytes([4]) + json.dumps(dict(response, http_status=3e9)).encode(),
    "azure-response-negative-attempts": bytes([4])
    + json.dumps(dict(response, attempts=-1)).encode(),
    "azure-response-wrong-type": bytes([4]) + json.dumps(dict(response, attempts="one")).encode(),
}


def write(target, seeds):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.startswith("seed-"):
            os.remove(os.path.join(directory, name))
    for name, data in seeds.items():
        with open(os.path.join(directory, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


write("fuzz_frame_decoder", frame_seeds)
write("fuzz_codecs", codec_seeds)
