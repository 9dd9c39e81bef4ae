#!/usr/bin/python3
"""Load generation, verification and JSON helpers for the cluster_*.sh
tests, over the etcd v3 gRPC API (Debian's python3-etcd3 for the channel
and the generated stubs).

  write --endpoints E1,E2,.. --prefix P --acklog F --errlog F --stop FILE
        [--threads N] [--timeout S] [--max-seconds S]
      Every thread puts fresh unique keys P<t>-<n>, each to the next
      endpoint in round-robin order, until FILE exists. Every acknowledged
      put is logged to the ack log as
          key TAB revision TAB endpoint TAB start TAB end
      (start/end: wall clock of the request) and every failed one to the
      error log as key TAB endpoint TAB start TAB end TAB error. A failed
      key is never retried (it may still have been committed).

  verify --endpoint E --prefix P ACKLOG...
      Linearizable read of everything under P on E (paged). Each
      acknowledged key must be there with its value, create and mod
      revision equal to the acknowledged revision, version 1; any other key
      under P must have the value the writer would have written (its ack
      was lost). Prints a summary. Exits 1 on any violation.

  failover-time --kill T [--dead T2] ACKLOG
      Seconds from T (just before the kill) to the first acknowledgement
      of a put sent after T2 (once the killed process was reaped; default
      T), then that put's key, revision and endpoint.

  bulk --endpoints E1,.. --prefix P --count N [--threads T] [--batch B]
      Puts P%06d for i < N (B keys per txn, one revision per txn), batches
      spread over the endpoints; a failed batch is retried (up to 5 times).
      Prints "last KEY revision R" on the last line.

  count --endpoint E --prefix P [--serializable]
      Paged read of P on E: checks every key's value; prints the count.

  status-field FIELD JSON      a field of `endpoint status -w json`
  json-field FIELD             header field (or top-level field) of stdin
  leader NAME JSON [NAME JSON..]
      The leader's NAME if every answering member names the same leader,
      that leader answered and reports itself as leader; else exit 1.
  hashkv-compare REV NAME JSON [NAME JSON..]
      `endpoint hashkv -w json` outputs: prints them; exit 1 unless all
      answered with the same hash.
  hashkv-cluster N < `endpoint hashkv --cluster -w json`
      Exit 1 unless N endpoints answered, all with the same hash.
  normalize SELF_ID LEADER_ID CLUSTER_ID < transcript
      Replaces member IDs (by role) and raft terms in etcdctl output.
"""

import json
import os
import re
import sys
import threading
import time

try:
    import etcd3
    from etcd3 import etcdrpc
except ImportError:  # the scripts skip (77) on this
    sys.stderr.write("python3 module etcd3 is not available\n")
    sys.exit(77)

GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_receive_message_length", 64 << 20),
]


def value_for(key):
    """Deterministic, key-dependent value (20..52 bytes)."""
    n = sum(key.encode()) % 33
    return "v:" + key + ":" + "y" * n


def client(endpoint, timeout):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=timeout,
                        grpc_options=GRPC_OPTIONS)


def opts(argv, flags):
    """Tiny --flag VALUE parser: returns (dict, positional)."""
    res = {}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            name = a[2:]
            if name not in flags:
                raise SystemExit("unknown option %s" % a)
            if flags[name] is bool:
                res[name] = True
                i += 1
                continue
            if i + 1 >= len(argv):
                raise SystemExit("option %s needs a value" % a)
            res[name] = flags[name](argv[i + 1])
            i += 2
        else:
            pos.append(a)
            i += 1
    return res, pos


def err_text(e):
    code = getattr(e, "code", None)
    details = getattr(e, "details", None)
    if callable(code) and callable(details):
        try:
            return "%s: %s" % (code().name, details())
        except Exception:
            pass
    return "%s: %s" % (type(e).__name__, str(e).replace("\n", " ")[:200])


# ------------------------------------------------------------------ write

def cmd_write(argv):
    o, _ = opts(argv, {"endpoints": str, "prefix": str, "acklog": str,
                       "errlog": str, "stop": str, "threads": int,
                       "timeout": float, "max-seconds": float})
    eps = o["endpoints"].split(",")
    timeout = o.get("timeout", 3.0)
    clients = [client(e, timeout) for e in eps]
    nthreads = o.get("threads", 3)
    limit = time.time() + o.get("max-seconds", 120)
    lock = threading.Lock()
    rr = [0]
    counts = {"ack": 0, "err": 0}
    ack = open(o["acklog"], "a", buffering=1)
    err = open(o["errlog"], "a", buffering=1)

    def worker(t):
        n = 0
        while not os.path.exists(o["stop"]) and time.time() < limit:
            with lock:
                i = rr[0] % len(eps)
                rr[0] += 1
            key = "%s%d-%08d" % (o["prefix"], t, n)
            n += 1
            start = time.time()
            try:
                resp = clients[i].kvstub.Put(
                    etcdrpc.PutRequest(key=key.encode(),
                                       value=value_for(key).encode()),
                    timeout)
            except Exception as e:
                end = time.time()
                with lock:
                    err.write("%s\t%s\t%.6f\t%.6f\t%s\n" % (
                        key, eps[i], start, end, err_text(e)))
                    counts["err"] += 1
                # a refused connection fails at once: do not spin
                time.sleep(0.02)
                continue
            end = time.time()
            with lock:
                ack.write("%s\t%d\t%s\t%.6f\t%.6f\n" % (
                    key, resp.header.revision, eps[i], start, end))
                counts["ack"] += 1

    ths = [threading.Thread(target=worker, args=(t,))
           for t in range(nthreads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    ack.close()
    err.close()
    print("writer: %d acknowledged, %d failed" % (counts["ack"],
                                                 counts["err"]))
    return 0 if counts["ack"] else 3


def read_acks(paths):
    acked = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2:
                    continue
                acked[parts[0]] = parts
    return acked


def range_all(c, prefix, serializable=False, keys_only=False):
    """Every kv under prefix, in pages of 5000 at one revision."""
    start = prefix.encode()
    end = bytearray(start)
    end[-1] += 1
    end = bytes(end)
    rev = 0
    out = []
    while True:
        req = etcdrpc.RangeRequest(key=start, range_end=end, limit=5000,
                                   revision=rev, serializable=serializable,
                                   keys_only=keys_only)
        resp = c.kvstub.Range(req, c.timeout)
        if rev == 0:
            rev = resp.header.revision
        out.extend(resp.kvs)
        if not resp.more or not resp.kvs:
            return rev, out
        start = resp.kvs[-1].key + b"\x00"


def cmd_verify(argv):
    o, acklogs = opts(argv, {"endpoint": str, "prefix": str})
    acked = read_acks(acklogs)
    c = client(o["endpoint"], 20)
    rev, kvs = range_all(c, o["prefix"])
    present = {kv.key.decode(): kv for kv in kvs}
    bad = []
    for key, parts in sorted(acked.items()):
        arev = int(parts[1])
        kv = present.get(key)
        if kv is None:
            bad.append("acknowledged write lost: %s (rev %d, via %s)" % (
                key, arev, parts[2] if len(parts) > 2 else "?"))
            continue
        if kv.value.decode() != value_for(key):
            bad.append("wrong value for %s" % key)
        if kv.mod_revision != arev or kv.create_revision != arev:
            bad.append("%s: acknowledged at rev %d, stored create %d mod %d"
                       % (key, arev, kv.create_revision, kv.mod_revision))
        if kv.version != 1:
            bad.append("%s: version %d, expected 1" % (key, kv.version))
    extra = 0
    for key, kv in present.items():
        if key in acked:
            continue
        extra += 1
        if kv.value.decode() != value_for(key):
            bad.append("unexpected key or value: %r" % key)
    top = max((int(p[1]) for p in acked.values()), default=0)
    if rev < top:
        bad.append("store revision %d below acknowledged revision %d"
                   % (rev, top))
    for b in bad[:20]:
        print("FAIL: " + b)
    if len(bad) > 20:
        print("FAIL: ... %d more" % (len(bad) - 20))
    print("verify on %s: %d acknowledged writes checked, %d keys present "
          "(%d committed without ack), store revision %d" % (
              o["endpoint"], len(acked), len(present), extra, rev))
    return 1 if bad else 0


def cmd_failover_time(argv):
    o, acklogs = opts(argv, {"kill": float, "dead": float})
    t = o["kill"]
    dead = o.get("dead", t)
    first = None
    for parts in read_acks(acklogs).values():
        start, end = float(parts[3]), float(parts[4])
        if start > dead and (first is None or end < first[0]):
            first = (end, parts)
    if first is None:
        print("none")
        return 1
    p = first[1]
    print("%.3f %s rev %s via %s, sent %.3fs after the kill" % (
        first[0] - t, p[0], p[1], p[2], float(p[3]) - t))
    return 0


# ------------------------------------------------------------------- bulk

def cmd_bulk(argv):
    o, _ = opts(argv, {"endpoints": str, "prefix": str, "count": int,
                       "threads": int, "batch": int, "timeout": float})
    eps = o["endpoints"].split(",")
    timeout = o.get("timeout", 10.0)
    clients = [client(e, timeout) for e in eps]
    count, batch = o["count"], o.get("batch", 1)
    lock = threading.Lock()
    nxt = [0]
    state = {"errors": 0, "fatal": None, "top": 0}

    def worker(t):
        c = clients[t % len(clients)]
        while True:
            with lock:
                if state["fatal"] is not None or nxt[0] >= count:
                    return
                lo = nxt[0]
                nxt[0] = min(count, lo + batch)
                hi = nxt[0]
            keys = ["%s%06d" % (o["prefix"], i) for i in range(lo, hi)]
            for attempt in range(6):
                try:
                    if len(keys) == 1:
                        resp = c.kvstub.Put(etcdrpc.PutRequest(
                            key=keys[0].encode(),
                            value=value_for(keys[0]).encode()), timeout)
                    else:
                        ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                            key=k.encode(), value=value_for(k).encode()))
                            for k in keys]
                        resp = c.kvstub.Txn(etcdrpc.TxnRequest(success=ops),
                                            timeout)
                    with lock:
                        state["top"] = max(state["top"],
                                           resp.header.revision)
                    break
                except Exception as e:
                    with lock:
                        state["errors"] += 1
                        if attempt == 5:
                            state["fatal"] = "%s: %s" % (keys[0], err_text(e))
                    time.sleep(0.2)

    t0 = time.time()
    ths = [threading.Thread(target=worker, args=(t,))
           for t in range(o.get("threads", 4))]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    dt = time.time() - t0
    if state["fatal"]:
        print("bulk: giving up: %s" % state["fatal"])
        return 1
    print("bulk: %d keys in %.1fs (%.0f keys/s, batch %d), %d retried "
          "errors" % (count, dt, count / dt, batch, state["errors"]))
    print("last %s%06d revision %d" % (o["prefix"], count - 1, state["top"]))
    return 0


def cmd_count(argv):
    o, _ = opts(argv, {"endpoint": str, "prefix": str,
                       "serializable": bool})
    c = client(o["endpoint"], 30)
    rev, kvs = range_all(c, o["prefix"], o.get("serializable", False))
    bad = [kv.key for kv in kvs if kv.value.decode() !=
           value_for(kv.key.decode())]
    for k in bad[:10]:
        print("FAIL: wrong value for %r" % k)
    print("%d keys at revision %d" % (len(kvs), rev))
    return 1 if bad else 0


# ------------------------------------------------------------------- JSON

def status_of(js):
    d = json.loads(js)
    if isinstance(d, list):
        d = d[0]
    return d.get("Status", d)


def cmd_status_field(argv):
    field, js = argv
    try:
        st = status_of(js)
    except Exception:
        return 1
    v = st.get(field, st.get("header", {}).get(field))
    if v is None:
        return 1
    print(v)
    return 0


def cmd_json_field(argv):
    (field,) = argv
    d = json.loads(sys.stdin.read())
    v = d.get("header", {}).get(field, d.get(field))
    if v is None:
        return 1
    print(v)
    return 0


def cmd_leader(argv):
    names = {}
    leaders = set()
    for name, js in zip(argv[0::2], argv[1::2]):
        try:
            st = status_of(js)
            mid = st["header"]["member_id"]
            names[mid] = name
            leaders.add(st.get("leader", 0))
        except Exception:
            continue
    if len(leaders) != 1:
        return 1
    (lid,) = leaders
    if not lid or lid not in names:
        return 1
    print(names[lid])
    return 0


def cmd_hashkv_compare(argv):
    rev = argv[0]
    hashes = {}
    ok = True
    for name, js in zip(argv[1::2], argv[2::2]):
        try:
            d = json.loads(js)
            h = d[0]["HashKV"]
            hashes[name] = h.get("hash", 0)
            print("  hashkv %-4s rev %s: hash %d compact_revision %d "
                  "revision %d" % (name, rev, h.get("hash", 0),
                                   h.get("compact_revision", 0),
                                   h["header"].get("revision", 0)))
        except Exception:
            print("  hashkv %-4s rev %s: no answer: %s" % (
                name, rev, js.strip().replace("\n", " ")[:300]))
            ok = False
    if len(set(hashes.values())) > 1:
        ok = False
    return 0 if ok else 1


def cmd_hashkv_cluster(argv):
    """stdin: `endpoint hashkv --cluster -w json`; argv: member count."""
    want = int(argv[0])
    text = sys.stdin.read()
    try:
        d = json.loads(text)
        hashes = [(e["Endpoint"], e["HashKV"].get("hash", 0),
                   e["HashKV"]["header"].get("revision", 0)) for e in d]
    except Exception:
        print("  hashkv --cluster: unparsable output: %s" % text[:300])
        return 1
    for ep, h, rev in hashes:
        print("  hashkv --cluster %s: hash %d revision %d" % (ep, h, rev))
    if len(hashes) != want or len({h for _, h, _ in hashes}) != 1:
        return 1
    return 0


# Roles instead of IDs: the member the command ran on, the leader, others.
def cmd_normalize(argv):
    self_id, leader_id, cluster_id = (int(a) for a in argv)
    others = {}

    def member(m):
        n = int(m.group(2))
        if n == self_id:
            role = "<SELF>"
        elif n == leader_id:
            role = "<LEADER>"
        else:
            role = others.setdefault(n, "<MEMBER%d>" % (len(others) + 1))
        return m.group(1) + role

    text = sys.stdin.read()
    text = re.sub(r'("member_id":)(\d+)', member, text)
    text = re.sub(r'("MemberID" : )(\d+)', member, text)
    text = re.sub(r'("cluster_id":)%d\b' % cluster_id, r"\1<CLUSTER>", text)
    text = re.sub(r'("ClusterID" : )%d\b' % cluster_id, r"\1<CLUSTER>", text)
    text = re.sub(r'("raft_term":)\d+', r"\1<TERM>", text)
    text = re.sub(r'("RaftTerm" : )\d+', r"\1<TERM>", text)
    sys.stdout.write(text)
    return 0


COMMANDS = {
    "write": cmd_write,
    "verify": cmd_verify,
    "failover-time": cmd_failover_time,
    "bulk": cmd_bulk,
    "count": cmd_count,
    "status-field": cmd_status_field,
    "json-field": cmd_json_field,
    "leader": cmd_leader,
    "hashkv-compare": cmd_hashkv_compare,
    "hashkv-cluster": cmd_hashkv_cluster,
    "normalize": cmd_normalize,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
