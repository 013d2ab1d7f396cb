"""An independent check of the audit proofs (issue 16), written from RFC 9162 and the formats
in docs/audit.md, sharing no code with the server: appends events over HTTP, fetches signed
heads, inclusion and consistency proofs, and verifies

- each head's Ed25519 signature over the documented message (the `cryptography` package);
- each leaf: its hash recomputed from `leaf_data`, and `leaf_data` parsed back into the
  event's stored fields, which must be the event the answer carries;
- inclusion proofs (RFC 9162 §2.1.3.2) against the signed head of the same size, for random
  events, at two head sizes;
- consistency proofs (§2.1.4.2) between random sizes and each head;
- and that a flipped node, a flipped signature or another key fails.

    check_proofs.py BASE_URL INGEST_KEY AUDITOR_KEY
"""

import base64
import datetime
import hashlib
import json
import random
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

BASE, INGEST, AUDITOR = sys.argv[1], sys.argv[2], sys.argv[3]
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 16)
checks = 0


def call(method, path, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def get(path):
    status, body = call("GET", path, AUDITOR)
    assert status == 200, (path, status, body)
    return body


def check(condition, what):
    global checks
    assert condition, what
    checks += 1


# ---- RFC 9162 §2.1 ------------------------------------------------------------------------
def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 §2.1.4.2, step by step."""
    if first == second:
        return proof == [] and first_hash == second_hash
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:  # an exact power of two
        proof = [first_hash] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---- docs/audit.md: the signed message and the leaf data ----------------------------------
def signed_message(head):
    return (
        "crm-tree-head-v1\n"
        f"tenant {head['tenant']}\n"
        f"tree_size {head['tree_size']}\n"
        f"root_hash {head['root_hash']}\n"
        f"timestamp {head['timestamp']}\n"
    ).encode()


def head_verifies(head, key):
    try:
        key.verify(base64.b64decode(head["signature"]), signed_message(head))
        return True
    except InvalidSignature:
        return False


def micros(text):
    at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    delta = at - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_leaf_data(data):
    """Splits leaf data into its fields (docs/audit.md, "Leaf data")."""
    domain = b"crm-merkle-leaf-v1"
    assert data.startswith(domain), "leaf data starts with its domain"
    at = len(domain)

    def take(n):
        nonlocal at
        piece = data[at : at + n]
        assert len(piece) == n, "leaf data ends early"
        at += n
        return piece

    def sized():
        (n,) = struct.unpack(">Q", take(8))
        return take(n)

    fields = {}
    fields["tenant"] = sized().decode()
    fields["stream_id"] = sized().decode()
    (fields["revision"],) = struct.unpack(">Q", take(8))
    fields["event_id"] = str(uuid.UUID(bytes=take(16)))
    fields["event_type"] = sized().decode()
    (fields["schema_version"],) = struct.unpack(">I", take(4))
    fields["data"] = sized().decode()
    fields["metadata"] = sized().decode()
    (fields["occurred_at"],) = struct.unpack(">q", take(8))
    (fields["recorded_at"],) = struct.unpack(">q", take(8))
    assert at == len(data), "leaf data has bytes after its last field"
    return fields


# ---- the run --------------------------------------------------------------------------------
def append(count, prefix):
    """Appends `count` customers with a few events each; returns (last_position, events)."""
    events = []
    for n in range(count):
        customer = f"{prefix}-{n}"
        events.append({"type": "CustomerRegistered",
                       "data": {"customer_id": customer, "kind": "person",
                                "name": f"Näme {n} ✓", "email": f"{customer}@example.com"}})
        for k in range(rng.randint(0, 4)):
            events.append({"type": "OrderPlaced",
                           "occurred_at": f"2026-0{1 + k}-1{k}T10:00:00.{n:06d}Z",
                           "data": {"customer_id": customer, "order_id": f"o-{k}",
                                    "amount": f"{rng.randint(1, 99999)}.{rng.randint(10, 99)}",
                                    "currency": "EUR"}})
    status, body = call("POST", "/v1/events", INGEST, {"events": events})
    assert status == 201, (status, body)
    return body["last_position"], [(e["stream"], e["revision"]) for e in body["events"]]


served = get("/v1/audit/public-key")
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(served["public_key"]))
check(hashlib.sha256(base64.b64decode(served["public_key"])).hexdigest()[:16] == served["key_id"],
      "the key id is the first 16 hex digits of SHA-256 of the raw key")

ours = []
heads = []
for round_ in range(3):
    position, appended = append(rng.randint(15, 40), f"py{round_}")
    ours.extend(appended)
    head = get(f"/v1/audit/head?min_position={position}")
    check(head_verifies(head, key), f"the head at {head['tree_size']} verifies")
    check(head["key_id"] == served["key_id"], "the head names the served key")
    heads.append(head)

# Tampered heads and another key never verify.
for member, value in [("tree_size", heads[0]["tree_size"] + 1), ("root_hash", "00" * 32),
                      ("tenant", "someone-else"), ("timestamp", "2020-01-01T00:00:00.000Z")]:
    check(not head_verifies(dict(heads[0], **{member: value}), key), f"a head with another {member}")
signature = bytearray(base64.b64decode(heads[0]["signature"]))
signature[5] ^= 1
check(not head_verifies(dict(heads[0], signature=base64.b64encode(signature).decode()), key),
      "a flipped signature")
other = Ed25519PrivateKey.generate().public_key()
check(not head_verifies(heads[0], other), "another key")

# The events this run appended are the last leaves of the tenant's tree (a fresh store may hold
# the fixture's too): leaf i of ours is tree leaf (size - len(ours) + i).
last = heads[-1]
first_leaf = last["tree_size"] - len(ours)
for head in heads:
    root = bytes.fromhex(head["root_hash"])
    in_tree = [(i, e) for i, e in enumerate(ours) if first_leaf + i < head["tree_size"]]
    for i, (stream, revision) in rng.sample(in_tree, min(25, len(in_tree))):
        query = urllib.parse.urlencode({"stream": stream, "revision": revision,
                                        "tree_size": head["tree_size"]})
        proof = get(f"/v1/audit/inclusion?{query}")
        check(proof["leaf_index"] == first_leaf + i, "the leaf index is the event's place")
        data = base64.b64decode(proof["leaf_data"])
        leaf = leaf_hash(data)
        check(leaf.hex() == proof["leaf_hash"], "the leaf hash is SHA-256(0x00 ‖ leaf data)")
        fields = parse_leaf_data(data)
        event = proof["event"]
        for name in ["tenant", "stream_id", "revision", "event_id", "event_type", "schema_version"]:
            check(fields[name] == event[name], f"leaf data's {name} is the event's")
        check(json.loads(fields["data"]) == event["data"], "leaf data's data is the event's")
        check(json.loads(fields["metadata"]) == event["metadata"], "leaf data's metadata")
        check(fields["occurred_at"] == micros(event["occurred_at"]), "occurred_at")
        check(fields["recorded_at"] == micros(event["recorded_at"]), "recorded_at")
        check((stream, revision) == (event["stream_id"], event["revision"]), "the event asked for")
        check("Näme" not in json.dumps(event, ensure_ascii=False), "personal fields stay sealed")
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        check(verify_inclusion(proof["leaf_index"], head["tree_size"], leaf, path, root),
              f"event {stream}@{revision} is in the signed tree of {head['tree_size']}")
        if path:
            j = rng.randrange(len(path))
            flipped = list(path)
            flipped[j] = bytes([flipped[j][0] ^ 1]) + flipped[j][1:]
            check(not verify_inclusion(proof["leaf_index"], head["tree_size"], leaf, flipped, root),
                  "a flipped node fails")
        check(not verify_inclusion(proof["leaf_index"], head["tree_size"],
                                   leaf_hash(data + b"x"), path, root), "another leaf fails")

# Consistency: each head extends the ones before it, and random sizes extend to each head.
for earlier, later in zip(heads, heads[1:]):
    proof = get(f"/v1/audit/consistency?from={earlier['tree_size']}&to={later['tree_size']}")
    check(proof["from_root"] == earlier["root_hash"] and proof["to_root"] == later["root_hash"],
          "the proof's roots are the signed ones")
    nodes = [bytes.fromhex(h) for h in proof["proof"]]
    old, new = bytes.fromhex(earlier["root_hash"]), bytes.fromhex(later["root_hash"])
    check(verify_consistency(earlier["tree_size"], later["tree_size"], old, new, nodes),
          f"{earlier['tree_size']} → {later['tree_size']}")
    check(not verify_consistency(earlier["tree_size"], later["tree_size"], new, new, nodes),
          "another old root fails")
for head in heads:
    for size in rng.sample(range(1, head["tree_size"] + 1), min(30, head["tree_size"])):
        proof = get(f"/v1/audit/consistency?from={size}&to={head['tree_size']}")
        check(proof["to_root"] == head["root_hash"], "to_root is the signed root")
        nodes = [bytes.fromhex(h) for h in proof["proof"]]
        check(verify_consistency(size, head["tree_size"], bytes.fromhex(proof["from_root"]),
                                 bytes.fromhex(head["root_hash"]), nodes),
              f"{size} → {head['tree_size']}")

print(f"audit proofs: {checks} checks passed ({len(ours)} events, heads at "
      f"{', '.join(str(h['tree_size']) for h in heads)})")
