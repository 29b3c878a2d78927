#!/usr/bin/python3
"""Writes structurally complete but unsigned DCAP quotes (v3, v4, v5 with
TD 1.0 and TD 1.5 bodies) as the seed corpus of fuzz_quote, so that the
fuzzer starts deep inside the parser. Real quotes stay in the shared vectors
and are never copied here. Usage: make_quote_seeds.py OUTDIR"""
import os
import struct
import sys

PEM = (b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG11kO1SMA0GCSqGSIb3DQEBCwUAMA0xCzAJBgNVBAYTAlVT\n"
       b"-----END CERTIFICATE-----\n") * 3 + b"\0"


def sig_data(qe_wrapped):
    auth = bytes(range(32))
    qe = bytes(384) + bytes(64) + struct.pack("<H", len(auth)) + auth
    chain = struct.pack("<HI", 5, len(PEM)) + PEM
    head = bytes(64) + bytes(64)
    if qe_wrapped:
        inner = qe + chain
        return head + struct.pack("<HI", 6, len(inner)) + inner
    return head + qe + chain


def quote(version, tee, body, body_type=None):
    hdr = struct.pack("<HHI", version, 2, tee) + bytes(4) + bytes.fromhex("939a7233f79c4ca9940a0db3957f0607") + bytes(20)
    if version == 5:
        hdr += struct.pack("<HI", body_type, len(body))
    sd = sig_data(version != 3)
    return hdr + body + struct.pack("<I", len(sd)) + sd


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = {
    "v3-sgx": quote(3, 0, bytes(384)),
    "v4-td10": quote(4, 0x81, bytes(584)),
    "v5-td10": quote(5, 0x81, bytes(584), 2),
    "v5-td15": quote(5, 0x81, bytes(648), 3),
    "v5-sgx": quote(5, 0, bytes(384), 1),
}
seeds["v4-td10-padded"] = seeds["v4-td10"] + bytes(70)
seeds["v4-td10-hex"] = ("0x" + seeds["v4-td10"].hex() + "\n").encode()
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
