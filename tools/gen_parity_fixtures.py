#!/usr/bin/env python3
"""Independent reference generator for raidfs parity test vectors.

This script is a deliberately simple, slow, pure-Python (standard library
only) reference implementation of the arithmetic raidfs relies on. It shares
no code or tables with ISA-L or with the Swift implementation; it was run once
to produce fixtures/parity-vectors.json, which the Swift tests check against.

What it implements:

* GF(2^8) multiplication with the polynomial x^8+x^4+x^3+x^2+1 (0x11d) by
  shift-and-xor, generator 2 -- the field used by Linux md RAID 6.
* RAID 5 parity: P = D_0 xor D_1 xor ... xor D_{k-1}.
* RAID 6 parity as in Linux lib/raid6: P = xor of data,
  Q = sum over j of 2^j * D_j (D_0 has coefficient 1).
* CRC32C (Castagnoli; reflected polynomial 0x82F63B78, init 0xFFFFFFFF,
  final xor 0xFFFFFFFF), computed bit by bit.
* md "left-symmetric" member placement for RAID 5 and RAID 6.

Output is deterministic (random.Random(20261126)).

Usage (from the repository root):

    python3 tools/gen_parity_fixtures.py [output-path]

The default output path is fixtures/parity-vectors.json.
"""

import json
import os
import random
import sys

SEED = 20261126
POLY = 0x11D
GENERATOR = 2


# --------------------------------------------------------------------------
# GF(2^8)
# --------------------------------------------------------------------------

def gfmul(a, b):
    """Multiply a and b in GF(2^8) modulo POLY, by shift-and-xor."""
    assert 0 <= a < 256 and 0 <= b < 256
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= POLY
    return result


def gfpow(base, exp):
    result = 1
    for _ in range(exp):
        result = gfmul(result, base)
    return result


def mul_row(coef):
    """The 256-entry table x -> coef*x, built from gfmul (for speed only)."""
    return [gfmul(coef, x) for x in range(256)]


# --------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------

def xor_parity(chunks):
    length = len(chunks[0])
    p = bytearray(length)
    for chunk in chunks:
        assert len(chunk) == length
        for i in range(length):
            p[i] ^= chunk[i]
    return bytes(p)


def raid6_q(chunks):
    length = len(chunks[0])
    q = bytearray(length)
    for j, chunk in enumerate(chunks):
        assert len(chunk) == length
        row = mul_row(gfpow(GENERATOR, j))
        for i in range(length):
            q[i] ^= row[chunk[i]]
    return bytes(q)


# --------------------------------------------------------------------------
# CRC32C
# --------------------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x82F63B78
            else:
                crc >>= 1
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------
# md left-symmetric layout
# --------------------------------------------------------------------------

def layout(level, n, stripe):
    """Return (p_member, q_member_or_None, [member of data index j])."""
    if level == 5:
        p = (n - 1) - stripe % n
        data = [(p + 1 + j) % n for j in range(n - 1)]
        return p, None, data
    if level == 6:
        p = (n - 1) - stripe % n
        q = (p + 1) % n
        data = [(p + 2 + j) % n for j in range(n - 2)]
        return p, q, data
    raise ValueError("unsupported level %r" % level)


# --------------------------------------------------------------------------
# Self checks (sanity of the reference itself)
# --------------------------------------------------------------------------

def self_check():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # Well-known facts about the 0x11d field with generator 2.
    assert gfmul(2, 0x80) == 0x1D
    assert gfpow(2, 255) == 1
    powers = set()
    x = 1
    for _ in range(255):
        powers.add(x)
        x = gfmul(x, 2)
    assert len(powers) == 255 and 0 not in powers  # 2 is a generator
    for a in range(256):
        assert gfmul(a, 1) == a and gfmul(a, 0) == 0
    # Commutativity and distributivity on a sample.
    rng = random.Random(1)
    for _ in range(2000):
        a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(256)
        assert gfmul(a, b) == gfmul(b, a)
        assert gfmul(a, b ^ c) == gfmul(a, b) ^ gfmul(a, c)
        assert gfmul(gfmul(a, b), c) == gfmul(a, gfmul(b, c))
    # Layouts are permutations of the members.
    for level, ns in ((5, (3, 4, 5)), (6, (4, 5, 6))):
        for n in ns:
            for s in range(2 * n):
                p, q, data = layout(level, n, s)
                members = [p] + ([q] if q is not None else []) + data
                assert sorted(members) == list(range(n))


# --------------------------------------------------------------------------
# Fixture generation
# --------------------------------------------------------------------------

def parity_entry(level, chunks):
    entry = {
        "level": level,
        "dataChunks": len(chunks),
        "chunkBytes": len(chunks[0]),
        "data": [c.hex() for c in chunks],
        "p": xor_parity(chunks).hex(),
    }
    if level == 6:
        entry["q"] = raid6_q(chunks).hex()
    return entry


def random_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def generate():
    rng = random.Random(SEED)
    parity = []

    for level, ks in ((5, (2, 3, 4, 7)), (6, (2, 3, 4, 8, 16))):
        for chunk_bytes in (32, 64, 4096):
            for k in ks:
                if chunk_bytes == 4096 and k not in (2, 4):
                    continue  # keep the fixture file small
                chunks = [random_bytes(rng, chunk_bytes) for _ in range(k)]
                parity.append(parity_entry(level, chunks))

    # RAID 6 special cases: 4 data chunks of 64 bytes.
    parity.append(parity_entry(6, [bytes(64) for _ in range(4)]))
    parity.append(parity_entry(6, [b"\xff" * 64 for _ in range(4)]))
    only3 = [bytes(64) for _ in range(4)]
    only3[3] = random_bytes(rng, 64)
    parity.append(parity_entry(6, only3))

    crc_inputs = [
        b"",
        b"123456789",
        bytes(32),
        b"\xff" * 32,
        bytes(range(32)),
    ]
    for n in (1, 7, 64, 1000, 4096):
        crc_inputs.append(random_bytes(rng, n))
    crc_cases = [{"dataHex": d.hex(), "crc": crc32c(d)} for d in crc_inputs]

    layouts = []
    for level, ns in ((5, (3, 4, 5)), (6, (4, 5, 6))):
        for n in ns:
            for s in range(2 * n):
                p, q, data = layout(level, n, s)
                layouts.append({
                    "level": level,
                    "members": n,
                    "stripe": s,
                    "p": p,
                    "q": q,
                    "data": data,
                })

    return {
        "generator": "tools/gen_parity_fixtures.py",
        "field": {"polynomial": "0x11d", "generator": GENERATOR},
        "parity": parity,
        "crc32c": crc_cases,
        "layout": layouts,
    }


def main(argv):
    self_check()
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(os.path.dirname(here), "fixtures", "parity-vectors.json")
    out = argv[1] if len(argv) > 1 else default
    doc = generate()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s (%d parity, %d crc32c, %d layout cases)"
          % (out, len(doc["parity"]), len(doc["crc32c"]), len(doc["layout"])))


if __name__ == "__main__":
    main(sys.argv)
