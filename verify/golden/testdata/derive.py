#!/usr/bin/env python3
"""Derive vtrain's golden vectors independently of the Go code.

Every encoding that peers or auditors must agree on is written out here
again from its byte layout, in plain Python (hashlib, struct, json), from
explicit inputs, and the results go to vectors.json beside this script.
golden_test.go rebuilds the same inputs with the real vtrain functions and
checks that they give these bytes and digests.

Run from anywhere:  python3 verify/golden/testdata/derive.py

A vector that changes is a change of a wire, signature or ledger format:
it needs a version bump of that encoding (its domain string), not just a
regenerated file.
"""

import base64
import hashlib
import json
import os
import struct

# ---------------------------------------------------------------------------
# Primitives


def sha256(b):
    return hashlib.sha256(b).digest()


def H(label):
    """A 32-byte hash standing for a state, an update, a value: SHA-256 of a label."""
    return sha256(label.encode())


def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


def lp(b):
    """A length-prefixed byte string: 8-byte big-endian length, then the bytes."""
    if isinstance(b, str):
        b = b.encode()
    return u64(len(b)) + b


def flag(v):
    return b"\x01" if v else b"\x00"


def f32bits(x):
    """The IEEE-754 binary32 bits of x (rounded to nearest from the double)."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f32le(bits):
    return b"".join(struct.pack("<I", b) for b in bits)


def f32be(bits):
    return struct.pack(">I", bits)


def f32str(bits):
    """The shortest decimal that reads back as the float32 with these bits."""
    x = struct.unpack("<f", struct.pack("<I", bits))[0]
    for p in range(1, 10):
        s = "%.*g" % (p, x)
        try:
            if f32bits(float(s)) == bits:
                return s
        except OverflowError:  # above the largest float32
            pass
    raise ValueError(bits)


def floats(values):
    """A float32 vector as (bits, decimals): the bits are authoritative."""
    bits = [f32bits(v) for v in values]
    return bits, [f32str(b) for b in bits]


def hx(b):
    return b.hex()


# ---------------------------------------------------------------------------
# Go's encoding/json, for the values these encodings hold: objects in the
# field order given, compact, HTML escaping off, []byte as standard base64,
# float64 as Go formats it (strconv 'f' with the shortest digits, or 'e'
# below 1e-6 and from 1e21 on, with a two-digit exponent at least).


def go_float(x):
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("unsupported float")
    if x == 0:
        return "-0" if struct.pack(">d", x)[0] & 0x80 else "0"
    r = repr(x)  # Python's repr is the shortest round-trip decimal, like Go's -1 precision
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mant, _, exp = r.partition("e")
    e = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    # value = 0.digits × 10^point
    point = len(ip) + e if ip != "0" else e - (len(fp) - len(fp.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    a = abs(x)
    if a < 1e-6 or a >= 1e21:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        ex = point - 1
        es = "-" if ex < 0 else "+"
        ed = "%02d" % abs(ex)
        if ed.startswith("0") and es == "-":  # Go writes e-07 as e-7
            ed = ed[1:]
        return sign + m + "e" + es + ed
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


def go_json(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (bytes, bytearray)):
        return '"' + base64.b64encode(bytes(v)).decode() + '"'
    if isinstance(v, str):
        if any(ord(c) < 0x20 or c in "\u2028\u2029" for c in v):
            raise ValueError("control characters: escapes differ between Go and Python")
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    if isinstance(v, dict):  # insertion order is the declaration order
        return "{" + ",".join(json.dumps(k) + ":" + go_json(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


class Raw:
    """A json.RawMessage: written as is (it must already be compact)."""

    def __init__(self, s):
        self.s = s


def go_json_raw(v):
    if isinstance(v, Raw):
        return v.s
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + go_json_raw(x) for k, x in v.items()) + "}"
    return go_json(v)


# ---------------------------------------------------------------------------
# Inputs shared by the vectors

FOUNDERS = [
    "12D3KooWBDGiDWHgoe9GZoNeGgZLEEK5wHythEFnqssTzWzzw11X",
    "12D3KooWNJuVaPJTCRHSup731onkVKBNRJm34b1AvPASLMdiLgmv",
]
PEER_C = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
PEER_D = "12D3KooWAJjbRkp8FPF5MKgMU53aUTxWkqvDrs4zc1VMbwRwfsbE"
OLD_PEER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"  # an RSA-style ID

# The float32 values of the vectors: negative, tiny (subnormal), negative
# zero, the largest finite, and non-round ones.
THETA = [0.1, -1.5, 1e-45, -0.0, 3.4028234663852886e38, 0.3333333432674408, -2.7182817459106445e-08, 1234.5677490234375]
MOMENTUM = [-0.001, 0.0, 1.1754942106924411e-38, 42.0]

vectors = {}

# ---------------------------------------------------------------------------
# Run ID: SHA-256 of the canonical spec (runspec.Spec.Canonical): compact
# JSON of runspec.Default().WithFounders(...), fields in declaration order,
# durations as time.Duration.String, nil slices as null, privacy omitted
# when zero (omitzero).

spec = {
    "version": 1,
    "run": {"name": "vtrain", "seed": 1, "rounds": 30},
    "model": {"kind": "mlp", "hidden": [256], "channels": None},
    "data": {"source": "fashion-mnist", "shards": 0},
    "inner": {"optimizer": "adamw", "lr": 1e-3, "steps": 400, "batch": 64, "weight_decay": 0.0, "momentum": 0.9},
    "outer": {"optimizer": "nesterov", "lr": 1.0, "momentum": 0.5},
    "compression": {"fraction": 0.005, "bits": 1, "chunk": 256},
    "aggregation": {"rule": "centered_clip", "trim": 0.2},
    "rounds": {"timeout": "1m0s", "commit_timeout": "10s", "quorum": 1, "max_message": 1 << 20, "max_update_norm": 1000.0},
    "verify": {"rate": 0.5, "newcomer_rate": 0.75, "probation": 10, "segment": 0, "challengers": 1, "openings": 4,
               "residual_block": 64, "timeout": "20s", "tolerance": 0.0},
    "members": {"genesis": sorted(FOUNDERS), "voters": 4, "admit": 2, "absent": 8, "max": 256},
}
canonical = go_json(spec).encode()
RUN = sha256(canonical)
vectors["run_id"] = {
    "founders": FOUNDERS,
    "canonical": canonical.decode(),
    "run_id": hx(RUN),
}

# Self-checks of go_float against how Go's encoding/json writes float64s.
assert go_float(1e-3) == "0.001" and go_float(1.0) == "1" and go_float(1000.0) == "1000"
assert go_float(1e-7) == "1e-7" and go_float(1e21) == "1e+21" and go_float(123456.5) == "123456.5"
assert go_float(0.000001) == "0.000001" and go_float(2.5e-10) == "2.5e-10"

# ---------------------------------------------------------------------------
# Batch-order seed and shard (consensus.RoundSeed, ShardOf; internal/prng):
# SplitMix64's finalizer over the run seed and labels, labels folded by
# FNV-1a 64. Go's ^ and + share a precedence level, so Derive's step is
# mix((h ^ label) + golden), left to right.

M64 = (1 << 64) - 1


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def derive(seed, *labels):
    h = mix(seed ^ 0x6A09E667F3BCC909)
    for l in labels:
        h = mix(((h ^ l) + 0x9E3779B97F4A7C15) & M64)
    return h


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001B3) & M64
    return h


vectors["round_seed"] = [
    {"name": name, "round": r, "peer": p, "seed": "%016x" % derive(1, fnv1a64("round"), r, fnv1a64(p)),
     "shards": 8, "shard": fnv1a64(p) % 8}
    for name, r, p in [("round 7", 7, FOUNDERS[0]), ("round 0", 0, FOUNDERS[1]), ("round 2^64-1", (1 << 64) - 1, PEER_C)]
]

# ---------------------------------------------------------------------------
# Update ID (consensus.Update.ID) and what its author signs
# (consensus.UpdateSignBytes).


def update_id(run, u):
    b = b"vtrain/update/v2\x00" + run + u64(u["round"]) + u["base"] + lp(u["from"]) + u64(u["samples"])
    b += f32be(u["loss_bits"]) + u64(u["seed"]) + u64(len(u["segments"])) + b"".join(u["segments"])
    b += u["residual_in"] + u["residual_out"] + u["payload"]
    return sha256(b)


def update_vec(name, **u):
    uid = update_id(RUN, u)
    sign = b"vtrain/sig/update/v1\x00" + uid
    return {
        "name": name, "run": hx(RUN), "round": u["round"], "base": hx(u["base"]), "from": u["from"],
        "samples": u["samples"], "loss_bits": "%08x" % u["loss_bits"], "loss": f32str(u["loss_bits"]),
        "seed": "%016x" % u["seed"], "segments": [hx(s) for s in u["segments"]],
        "residual_in": hx(u["residual_in"]), "residual_out": hx(u["residual_out"]), "payload": hx(u["payload"]),
        "id": hx(uid), "sign_bytes": hx(sign),
    }


vectors["update"] = [
    update_vec("three segments", round=12, base=H("state 12"), **{"from": FOUNDERS[0]}, samples=12800,
               loss_bits=f32bits(0.4567), seed=0x8BADF00DDEADBEEF,
               segments=[H("segment 0"), H("segment 1"), H("segment 2")],
               residual_in=H("residual in"), residual_out=H("residual out"),
               payload=bytes([0x01, 0x00, 0xFF, 0x80, 0x7F]) + b"vtrain"),
    update_vec("no segments, empty payload, negative loss", round=0, base=bytes(32), **{"from": OLD_PEER},
               samples=0, loss_bits=f32bits(-0.0), seed=0, segments=[],
               residual_in=bytes(32), residual_out=H("r"), payload=b""),
]

# ---------------------------------------------------------------------------
# State hash (consensus.ParamsDigest, Members.Digest, StateHash, State.Hash)
# and the voter-set digest (consensus.VotersDigest).


def params_digest(theta_bits, mom_bits):
    b = b"vtrain/params/v1\x00"
    for v in (theta_bits, mom_bits):
        b += u64(len(v)) + f32le(v)
    return sha256(b)


def members_digest(members, excluded):
    b = b"vtrain/members/v3\x00" + u64(len(members))
    for m in members:
        b += lp(m["id"]) + flag(m["founder"]) + flag(m["seat"]) + u64(m["since"]) + u64(m["work"]) + u64(m["last"])
        b += bytes.fromhex(m["residual"])  # the residual root its last aggregated update kept, 32 zero bytes before any
        b += u32(m["pace"])  # when its updates reach the proposers, ms after the round starts, smoothed (0: unknown)
    b += u64(len(excluded)) + b"".join(lp(p) for p in excluded)
    # The private members' gates (the last aggregated update still without a
    # pass on its proof), appended only when some member has one: a
    # membership without gates hashes as it did before gates existed.
    gated = [m for m in members if m.get("unproven", hx(bytes(32))) != hx(bytes(32))]
    if gated:
        b += u64(len(gated)) + b"".join(lp(m["id"]) + bytes.fromhex(m["unproven"]) for m in gated)
    return sha256(b)


def state_hash(round_, params, members):
    return sha256(b"vtrain/state/v2\x00" + u64(round_) + params + members)


def voters_digest(voters):
    return sha256(b"vtrain/voters/v1\x00" + u64(len(voters)) + b"".join(lp(p) for p in voters))


def member(id_, founder, seat, since, work, last, residual=bytes(32), pace=0, unproven=None):
    m = {"id": id_, "founder": founder, "seat": seat, "since": since, "work": work, "last": last, "residual": hx(residual),
         "pace": pace}
    if unproven is not None:
        m["unproven"] = hx(unproven)
    return m


MEMBERS = sorted([
    member(FOUNDERS[0], True, True, 0, 17, 20, H("residual a"), 3412),
    member(FOUNDERS[1], True, True, 0, 20, 20, H("residual b"), 2987),
    member(PEER_D, False, True, 3, 12, 19, H("residual d"), 70000),
    member(PEER_C, False, False, 18, 1, 20),
], key=lambda m: m["id"].encode())
EXCLUDED = sorted([OLD_PEER, "12D3KooWExcluded1111111111111111111111111111111111"])


def state_vec(name, round_, theta, momentum, members, excluded):
    tb, tv = floats(theta)
    mb, mv = floats(momentum)
    p = params_digest(tb, mb)
    m = members_digest(members, excluded)
    return {
        "name": name, "round": round_,
        "theta": tv, "theta_bits": ["%08x" % b for b in tb],
        "momentum": mv, "momentum_bits": ["%08x" % b for b in mb],
        "members": members, "excluded": excluded,
        "params_digest": hx(p), "members_digest": hx(m), "state_hash": hx(state_hash(round_, p, m)),
    }


vectors["state"] = [
    state_vec("round 21, four members, two excluded", 21, THETA, MOMENTUM, MEMBERS, EXCLUDED),
    state_vec("genesis shape: zero momentum, founders only", 0, [0.25, -0.125, 3e-39], [0.0, 0.0, 0.0],
              [member(f, True, True, 0, 0, 0) for f in sorted(FOUNDERS)], []),
    state_vec("empty", (1 << 64) - 1, [], [], [], []),
    state_vec("round 21, two private members waiting for the pass on their last update", 21, THETA, MOMENTUM,
              sorted([dict(m, unproven=hx(H("unproven " + m["id"]))) if m["id"] in (FOUNDERS[1], PEER_C) else m for m in MEMBERS],
                     key=lambda m: m["id"].encode()), EXCLUDED),
]

VOTERS = [m["id"] for m in MEMBERS if m["seat"]]
NEXT_VOTERS = sorted(VOTERS + [PEER_C])
vectors["voters"] = [
    {"name": "three seats", "voters": VOTERS, "digest": hx(voters_digest(VOTERS))},
    {"name": "four seats", "voters": NEXT_VOTERS, "digest": hx(voters_digest(NEXT_VOTERS))},
    {"name": "none", "voters": [], "digest": hx(voters_digest([]))},
]

# ---------------------------------------------------------------------------
# Snapshot hash (trainer.Snapshot.Hash) and trainer.ParamHash.


def snapshot_hash(step, opt_steps, params_bits, opt):
    # v2: the parameters and the optimizer's buffers each under their own
    # digest, so that a light snapshot (parameters and the buffers' digest)
    # hashes the same.
    return sha256(b"vtrain/snapshot/v2\x00" + u64(step) + u64(opt_steps) + sha256(u64(len(params_bits)) + f32le(params_bits))
                  + opt_digest(opt))


def opt_digest(opt):
    b = b""
    for k in sorted(opt, key=lambda s: s.encode()):
        b += lp(k) + u64(len(opt[k])) + f32le(opt[k])
    return sha256(b)


def snapshot_vec(name, step, opt_steps, params, opt):
    pb, pv = floats(params)
    ob = {k: floats(v) for k, v in opt.items()}
    return {
        "name": name, "step": step, "opt_steps": opt_steps,
        "params": pv, "params_bits": ["%08x" % b for b in pb],
        "opt": {k: v for k, (_, v) in ob.items()},
        "opt_bits": {k: ["%08x" % b for b in bits] for k, (bits, _) in ob.items()},
        "hash": hx(snapshot_hash(step, opt_steps, pb, {k: bits for k, (bits, _) in ob.items()})),
        "opt_digest": hx(opt_digest({k: bits for k, (bits, _) in ob.items()})),
        "param_hash": hx(sha256(f32le(pb))),
    }


vectors["snapshot"] = [
    # Written out of name order: the hash sorts the buffer names.
    snapshot_vec("adamw after 25 steps", 25, 25, THETA,
                 {"v": [1e-8, 2.5e-7, 0.0, 1e-45], "m": [-0.01, 0.02, -0.0, 5.5], "m.bias": [0.125]}),
    snapshot_vec("sgd without buffers", 3, 0, [1.0, -1.0], {}),
    snapshot_vec("empty buffer", 0, 7, [], {"momentum": []}),
]

# ---------------------------------------------------------------------------
# Signed messages (consensus.VoteSignBytes, JoinSignBytes, VerdictSignBytes)
# and a certificate: each precommit of it is checked against the sign bytes
# of the vote it stands for (kind precommit, the certificate's round, view
# and value, ValidView -1, the signer).

KIND = {"proposal": 1, "prevote": 2, "precommit": 3}


def vote_sign_bytes(run, v):
    return (b"vtrain/sig/vote/v1\x00" + run + u8(KIND[v["kind"]]) + u64(v["round"]) + u32(v["view"])
            + v["value"] + u32(v["valid_view"]) + lp(v["from"]))


def vote(kind, round_, view, value, valid_view, from_, sig=b""):
    return {"kind": kind, "round": round_, "view": view, "value": value, "valid_view": valid_view, "from": from_, "sig": sig}


def vote_json(name, v):
    return {"name": name, "run": hx(RUN), "kind": v["kind"], "round": v["round"], "view": v["view"],
            "value": hx(v["value"]), "valid_view": v["valid_view"], "from": v["from"],
            "sign_bytes": hx(vote_sign_bytes(RUN, v))}


VALUE_ID_FOR_VOTES = H("value 21")
vectors["vote"] = [
    vote_json("precommit", vote("precommit", 21, 0, VALUE_ID_FOR_VOTES, -1, FOUNDERS[0])),
    vote_json("prevote for nil", vote("prevote", 21, 3, bytes(32), -1, PEER_D)),
    vote_json("proposal re-proposed from view 2", vote("proposal", 21, 4, VALUE_ID_FOR_VOTES, 2, FOUNDERS[1])),
    vote_json("proposal, view 2^32-1", vote("proposal", (1 << 64) - 1, 0xFFFFFFFF, H("v"), -1, PEER_C)),
]


def join_sign_bytes(run, j):
    return b"vtrain/sig/join/v1\x00" + run + u64(j["round"]) + lp(j["from"])


def answer_sign_bytes(run, v):
    """The accused's signed answer a verdict carries (consensus.AnswerSignBytes)."""
    a = v["answer"]
    # v2: a private peer's answer, which carries the proof of the drawn step.
    domain = b"vtrain/sig/answer/v2\x00" if a.get("proof") else b"vtrain/sig/answer/v1\x00"
    b = domain + run + u64(v["round"]) + v["update"] + u64(v["segment"]) + u64(len(a["leaves"]))
    for leaf in a["leaves"]:
        b += leaf
    if a.get("proof"):
        b += lp(a["proof"])
    return b


def verdict_sign_bytes(run, v):
    b = (b"vtrain/sig/verdict/v2\x00" + run + u64(v["round"]) + v["update"] + lp(v["accused"])
         + u64(v["segment"]) + lp(v["from"]) + flag(v["pass"]) + lp(v["reason"])
         + u8(v["fault"]) + u64(v["step"]) + flag(v["answer"] is not None))
    if v["answer"] is not None:
        b += lp(answer_sign_bytes(run, v)) + lp(v["answer"]["sig"])
    return b


JOIN = {"round": 20, "from": PEER_C, "sig": bytes(range(64))}
# A step dispute on segment 5 (steps 65..78 of 200, 13 per segment): the
# accused's signed leaves, and step 67 that does not follow from leaf 66.
VERDICT_FAIL = {"round": 19, "update": H("update 19 d"), "accused": PEER_D, "segment": 5, "from": FOUNDERS[0],
                "pass": False, "reason": "step 67 from the state after step 66 gives 9f86d081, the accused signed 2c26b46b",
                "fault": 1, "step": 67,
                "answer": {"leaves": [H("leaf %d" % k) for k in range(66, 79)], "sig": b"\xbb" * 64},
                "sig": b"\xaa" * 64}
VERDICT_PASS = {"round": 20, "update": H("update 20 a"), "accused": FOUNDERS[1], "segment": 0, "from": PEER_D,
                "pass": True, "reason": "", "fault": 0, "step": 0, "answer": None, "sig": b"\x55" * 64}
# A private peer's update: its challenger passes the drawn step (137 of
# 400) on the strength of the accused's signed proof of it (here 196 bytes
# standing in for a Groth16 proof bundle: the encoding does not look inside).
VERDICT_PRIVATE = {"round": 21, "update": H("update 21 private"), "accused": PEER_D, "segment": 137, "from": FOUNDERS[0],
                   "pass": True, "reason": "", "fault": 0, "step": 0,
                   "answer": {"leaves": [], "proof": bytes((7 * k + 3) % 256 for k in range(196)), "sig": b"\xcc" * 64},
                   "sig": b"\x77" * 64}
# A claim that the accused was silent, from a member the beacon did not
# draw: a lie on its face, which a value overturns.
VERDICT_LIE = {"round": 20, "update": H("update 20 a"), "accused": FOUNDERS[1], "segment": 3, "from": PEER_C,
               "pass": False, "reason": "made up", "fault": 4, "step": 0, "answer": None, "sig": b"\x66" * 64}

vectors["join"] = [{"name": "joiner at round 20", "run": hx(RUN), "round": JOIN["round"], "from": JOIN["from"],
                    "sign_bytes": hx(join_sign_bytes(RUN, JOIN))}]


def answer_json(v):
    if v["answer"] is None:
        return None
    a = {"leaves": [hx(x) for x in v["answer"]["leaves"]], "sig": hx(v["answer"]["sig"])}
    if v["answer"].get("proof"):
        a["proof"] = hx(v["answer"]["proof"])
    return a


def verdict_json(name, v):
    return {"name": name, "run": hx(RUN), "round": v["round"], "update": hx(v["update"]), "accused": v["accused"],
            "segment": v["segment"], "from": v["from"], "pass": v["pass"], "reason": v["reason"],
            "fault": v["fault"], "step": v["step"], "answer": answer_json(v),
            "sign_bytes": hx(verdict_sign_bytes(RUN, v))}


vectors["verdict"] = [verdict_json("failed step dispute, non-ASCII reason", VERDICT_FAIL), verdict_json("passed", VERDICT_PASS),
                      verdict_json("silent claim", VERDICT_LIE), verdict_json("private pass with its proof", VERDICT_PRIVATE)]

CERT_SIGNERS = sorted([FOUNDERS[0], FOUNDERS[1], PEER_D])
cert = {"round": 21, "view": 1, "value": VALUE_ID_FOR_VOTES}
vectors["certificate"] = {
    "name": "three of three voters, view 1",
    "run": hx(RUN), "round": cert["round"], "view": cert["view"], "value": hx(cert["value"]),
    "voters": VOTERS,
    "sigs": [{"from": p, "sig": hx(sha256(b"sig " + p.encode()) * 2),
              "sign_bytes": hx(vote_sign_bytes(RUN, vote("precommit", cert["round"], cert["view"], cert["value"], -1, p)))}
             for p in CERT_SIGNERS],
}

# ---------------------------------------------------------------------------
# Value ID (consensus.Value.ID).


def value_id(run, v):
    b = b"vtrain/value/v4\x00" + run + u64(v["round"]) + v["base"] + v["voters"]
    b += u64(len(v["updates"]))
    for u in v["updates"]:
        # at: ms after the proposer's round start; late: an update of the round before (v4)
        b += u["id"] + lp(u["from"]) + flag(u["newcomer"]) + u32(u["at"]) + flag(u.get("late", False))
    b += u64(len(v["admit"]))
    for j in v["admit"]:
        b += u64(j["round"]) + lp(j["from"]) + lp(j["sig"])
    b += u64(len(v["verdicts"]))
    for x in v["verdicts"]:
        b += lp(verdict_sign_bytes(run, x)) + lp(x["sig"])
    b += u64(len(v["overturned"]))
    for x in v["overturned"]:
        b += lp(verdict_sign_bytes(run, x)) + lp(x["sig"])
    b += u64(len(v["evidence"]))
    for q in v["evidence"]:
        for x in (q["a"], q["b"]):
            b += lp(vote_sign_bytes(run, x)) + lp(x["sig"])
    b += v["next"] + v["next_voters"]
    return sha256(b)


def verdict_fields(x):
    return {"round": x["round"], "update": hx(x["update"]), "accused": x["accused"], "segment": x["segment"],
            "from": x["from"], "pass": x["pass"], "reason": x["reason"], "fault": x["fault"], "step": x["step"],
            "answer": answer_json(x), "sig": hx(x["sig"])}


def value_json(name, v):
    def vj(x):
        return {"kind": x["kind"], "round": x["round"], "view": x["view"], "value": hx(x["value"]),
                "valid_view": x["valid_view"], "from": x["from"], "sig": hx(x["sig"])}

    return {
        "name": name, "run": hx(RUN), "round": v["round"], "base": hx(v["base"]), "voters": hx(v["voters"]),
        "updates": [{"id": hx(u["id"]), "from": u["from"], "newcomer": u["newcomer"], "at": u["at"], "late": u.get("late", False)} for u in v["updates"]],
        "admit": [{"round": j["round"], "from": j["from"], "sig": hx(j["sig"])} for j in v["admit"]],
        "verdicts": [verdict_fields(x) for x in v["verdicts"]],
        "overturned": [verdict_fields(x) for x in v["overturned"]],
        "evidence": [{"a": vj(q["a"]), "b": vj(q["b"])} for q in v["evidence"]],
        "next": hx(v["next"]), "next_voters": hx(v["next_voters"]),
        "id": hx(value_id(RUN, v)),
    }


updates = sorted([
    {"id": H("update 21 a"), "from": FOUNDERS[0], "newcomer": False, "at": 3305},
    {"id": H("update 21 b"), "from": FOUNDERS[1], "newcomer": False, "at": 2950},
    {"id": H("update 21 c"), "from": PEER_C, "newcomer": True, "at": 0},
    {"id": H("update 20 d"), "from": PEER_D, "newcomer": False, "at": 0, "late": True},
], key=lambda u: u["id"])
equivocation = {
    "a": vote("prevote", 21, 0, H("value 21 x"), -1, PEER_D, b"\x01" * 64),
    "b": vote("prevote", 21, 0, H("value 21 y"), -1, PEER_D, b"\x02" * 64),
}
VS = voters_digest(VOTERS)
vectors["value"] = [
    value_json("updates, an admission, two verdicts, an overturned one, an equivocation", {
        "round": 21, "base": H("state 21"), "voters": VS, "updates": updates, "admit": [JOIN],
        "verdicts": [VERDICT_FAIL, VERDICT_PASS], "overturned": [VERDICT_LIE], "evidence": [equivocation],
        "next": H("state 22"), "next_voters": voters_digest(NEXT_VOTERS),
    }),
    value_json("nothing aggregated", {
        "round": 4, "base": H("state 4"), "voters": VS, "updates": [], "admit": [], "verdicts": [], "overturned": [], "evidence": [],
        "next": H("state 5"), "next_voters": VS,
    }),
]

# ---------------------------------------------------------------------------
# Ledger (verify/ledger): Entry.Encode (compact JSON in field order, empty
# fields omitted, []byte as base64, Data raw), LeafHash = SHA-256(0x00 ||
# entry), NodeHash = SHA-256(0x01 || left || right), the RFC 6962 root of
# three entries, and what a tree head's signature covers. A decision
# entry's data is an audit.Decision.


def entry(kind, round_, peer="", reason="", blob="", wire=b"", head=None, data=None):
    e = {"kind": kind, "round": round_}
    if peer:
        e["peer"] = peer
    if reason:
        e["reason"] = reason
    if blob:
        e["blob"] = blob
    if wire:
        e["wire"] = wire
    if head is not None:
        e["head"] = head
    if data is not None:
        e["data"] = Raw(data)
    return go_json_raw(e).encode()


decision = {"base": hx(H("state 21")), "result": hx(H("state 22")),
            "updates": [hx(u["id"]) for u in updates], "peers": [u["from"] for u in updates],
            "samples": 38400, "signers": 3}  # restored false and next_voters nil: omitted
decision_data = go_json(decision)
WIRE = bytes([0x0A, 0x20]) + H("wire") + bytes([0x00, 0xFF, 0xFE])  # 37 bytes: base64 with padding
HEAD = {"run": hx(RUN), "round": 21, "size": 57, "root": hx(H("root 57")), "signer": FOUNDERS[0], "sig": b"\x07" * 64}

e_decision = entry("decision", 21, wire=WIRE, data=decision_data)
e_leave = entry("leave", 22, peer=PEER_D, reason="excluded: failed verdict <segment 5> & \"quoted\"")
e_head = entry("tree_head", 21, head=HEAD)
leaves = [sha256(b"\x00" + e) for e in (e_decision, e_leave, e_head)]


def node(l, r):
    return sha256(b"\x01" + l + r)


head_signed = b"vtrain/v1/tree-head\x00" + RUN + u64(21) + u64(57) + H("root 57")
vectors["ledger"] = {
    "decision": {"base": decision["base"], "result": decision["result"], "updates": decision["updates"],
                 "peers": decision["peers"], "samples": decision["samples"], "signers": decision["signers"],
                 "json": decision_data},
    "wire": hx(WIRE),
    "head": {k: (hx(v) if isinstance(v, bytes) else v) for k, v in HEAD.items()},
    "entries": [
        {"name": "decision with data and wire", "kind": "decision", "round": 21, "encoded": e_decision.decode(),
         "leaf_hash": hx(leaves[0])},
        {"name": "leave with peer and reason", "kind": "leave", "round": 22, "peer": PEER_D,
         "reason": "excluded: failed verdict <segment 5> & \"quoted\"", "encoded": e_leave.decode(),
         "leaf_hash": hx(leaves[1])},
        {"name": "tree head", "kind": "tree_head", "round": 21, "encoded": e_head.decode(), "leaf_hash": hx(leaves[2])},
    ],
    "node_01": hx(node(leaves[0], leaves[1])),
    "root_3": hx(node(node(leaves[0], leaves[1]), leaves[2])),
    "empty_root": hx(sha256(b"")),
    "tree_head_signed_bytes": hx(head_signed),
}

# ---------------------------------------------------------------------------
# Spot-check draw (verify/spot): the beacon over the round, the next state
# and the sorted update IDs; each draw is SHA-256 over the beacon, the
# update and a label, its first 8 bytes (big-endian) giving x = (v >> 11) /
# 2^53 and the next 8 a 64-bit integer.


def beacon(round_, result, ids):
    return sha256(b"vtrain/beacon/v1\x00" + u64(round_) + result + b"".join(sorted(ids)))


def draw(b, update, label):
    s = sha256(b"vtrain/draw/v1\x00" + b + update + label.encode())
    x = struct.unpack(">Q", s[:8])[0]
    return (x >> 11) / float(1 << 53), struct.unpack(">Q", s[8:16])[0]


ids = [H("update 21 c"), H("update 21 a"), H("update 21 b")]  # unsorted: the beacon sorts them
BEACON = beacon(21, H("state 22"), ids)
target = H("update 21 c")
x, _ = draw(BEACON, target, "challenged")
_, ch = draw(BEACON, target, "challenger")
peers = [PEER_C, FOUNDERS[1], OLD_PEER, FOUNDERS[0], PEER_D, FOUNDERS[1]]  # a duplicate; Assign drops the accused and sorts
others = sorted(set(p for p in peers if p != PEER_C))
vectors["spot"] = {
    "round": 21, "result": hx(H("state 22")), "updates": [hx(i) for i in ids], "beacon": hx(BEACON),
    "update": hx(target),
    "challenged_x": repr(x), "challenged_x_bits": "%016x" % struct.unpack(">Q", struct.pack(">d", x))[0],
    "challenger_u64": "%016x" % ch,
    "peer": PEER_C, "peers": peers, "challenger": others[ch % len(others)],
}


# The residual blocks a challenger opens: first ceil(m/2) distinct blocks
# among those the payload sends from (draws labelled "sent/CHALLENGER/j",
# each picking sent[v mod len(sent)], skipping repeats and blocks out of
# range; fewer when fewer blocks send), then distinct uniform draws
# labelled "block/CHALLENGER/j" (v mod n, skipping repeats) up to m; then
# sorted.
def blocks(b, update, challenger, n, m, sent):
    m = min(m, n)
    out, j = [], 0
    ms = min((m + 1) // 2, len(set(x for x in sent if 0 <= x < n)))
    while len(out) < ms:
        _, v = draw(b, update, "sent/%s/%d" % (challenger, j))
        x = sent[v % len(sent)]
        if 0 <= x < n and x not in out:
            out.append(x)
        j += 1
    j = 0
    while len(out) < m:
        _, v = draw(b, update, "block/%s/%d" % (challenger, j))
        if v % n not in out:
            out.append(v % n)
        j += 1
    return sorted(out)


SENT = [3, 3, 17, 17, 17, 400, 3180]
vectors["spot"]["blocks"] = [{"challenger": c, "n": n, "m": m, "sent": s, "blocks": blocks(BEACON, target, c, n, m, s)}
                             for c, n, m, s in ((FOUNDERS[0], 3181, 4, SENT), (PEER_D, 3181, 4, SENT), (FOUNDERS[0], 3181, 4, []),
                                                (FOUNDERS[0], 5, 5, [1]), (FOUNDERS[0], 1 << 40, 3, SENT))]

# ---------------------------------------------------------------------------

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump({"_comment": "Generated by derive.py (python3 verify/golden/testdata/derive.py); do not edit. "
                           "A changed vector is a format change: bump that encoding's version.",
               **vectors}, f, indent=1, ensure_ascii=False)
    f.write("\n")
print("wrote", out)
