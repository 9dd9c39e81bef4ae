#!/usr/bin/python3
"""Watch and lease clients for the watch_*.sh / lease_*.sh black-box tests,
over etcd's v3 gRPC API (Debian's python3-etcd3 for the client, its
generated stubs and grpc).

  scenario --endpoint E [--prefix P]
      A fixed scenario through the python3-etcd3 client API: put, get,
      delete, txn, watch / watch_prefix with start revisions (history
      replay), prev_kv, filters, cancel, compaction, leases (grant, put
      with lease, refresh, get_lease_info, revoke, expiry) and their errors.
      Prints a transcript that is identical for two servers that behave
      the same: lease IDs are numbered in order of appearance, remaining
      TTLs are printed as a range check. Timings go to stderr.

  write --endpoints E1,E2,.. --log FILE --seconds S [--threads N]
        [--seed N] [--sentinel KEY] [--keys K1,K2,..]
      Concurrent writers (thread t writes through endpoint t mod n) on an
      overlapping key set: puts, multi-put txns, single deletes, range
      deletes and put+delete txns. Every acknowledged write that made a
      revision is logged as one JSON line {"rev", "ev": [[type, key, value],
      ..], "w", "ep"}, events in the order the server applies them. At the
      end the sentinel key is put (logged too). Exit 3 if any write failed
      (the history would be uncertain).

  watchers --spec FILE --outdir DIR --sentinel KEY --ready FILE
           [--timeout S]
      Runs the watchers described in the JSON spec (list of {name, ep, key,
      range_end, start, prev_kv, slow, stall, stall_after, delay,
      resume_after, resume_ep}),
      each on its own gRPC connection and thread, each recording every
      watch response (boundaries kept) to DIR/NAME.jsonl until it has seen
      the sentinel key. `delay` (s) postpones the open; `ready` is written
      once the watchers with delay 0 are created. `slow` (s) is slept after
      every response; `stall` (s) once after `stall_after` event-carrying
      responses (the server must buffer or catch up). With resume_after N the watcher drops its stream
      after N event-carrying responses and re-watches from the last
      revision + 1 on resume_ep.

  check --writes FILE --watchers DIR --spec FILE [--same A,B ..]
      Checks the recorded watch streams against the writers' history: the
      history itself covers every revision (2 .. sentinel); per watcher:
      ordered, unique, atomic (each response holds complete revisions),
      reliable (exactly the expected events, values, mod revisions and
      prev_kv), resumable (the resumed part is exactly the rest); and the
      pairs given by --same saw identical sequences. Exit 1 on violation.

  lease-failover --grant-ep E --watch-ep E2 --ttl S --keepalive-secs S
                 --prefix P --state DIR [--timeout S]
      Grants a lease through E, attaches 3 keys, watches P through E2,
      keeps the lease alive through E once a second for keepalive-secs,
      writes DIR/last_keepalive (JSON), then records TimeToLive (through
      E2) and the DELETE events until the keys are gone. Writes
      DIR/result.json.

  lease-verdict --result FILE --kill T --leader-seen T --ttl S
                --election-ms N [--strict]
      Prints the expiry timings and checks them (see lease_failover.sh).

  mem --endpoint E --pid PID [--streams N] [--per-stream N] [--prefix P]
      [--burst-batch N] [--value-size N] [--open-timeout S]
      Opens streams x per-stream watchers on distinct keys (grpc.aio) and
      reads VmRSS of PID before and after; then bursts of one put per
      watched key (txns of burst-batch): round 1 with every watcher
      reading, then one more stream watching the whole prefix (prev_kv) is
      opened and never read after its creation, rounds 2..rounds with it;
      VmRSS after each round and after everything was cancelled. Prints
      one "RESULT" JSON line.
      Exit 77 when the watchers could not be opened in open-timeout.
"""

import argparse
import json
import os
import queue
import random
import sys
import threading
import time

try:
    import grpc
    import etcd3
    from etcd3 import etcdrpc
except ImportError:
    sys.stderr.write("python3 modules grpc / etcd3 are not available\n")
    sys.exit(77)

GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_receive_message_length", 256 << 20),
    # every channel its own TCP connection (a slow reader must not share
    # its connection's flow control window with another watcher)
    ("grpc.use_local_subchannel_pool", 1),
]

PUT = "PUT"
DELETE = "DELETE"


def client(endpoint, timeout=5.0):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=timeout,
                        grpc_options=GRPC_OPTIONS)


# A small receive window (no BDP probing: the window stays at what the
# client announced): a watcher that stops reading stalls the server's
# sends soon, and the server has to buffer or catch it up.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0),
                ("grpc.http2.lookahead_bytes", 16384)]


def channel(endpoint, small_window=False):
    return grpc.insecure_channel(
        endpoint, options=GRPC_OPTIONS + (SMALL_WINDOW if small_window
                                          else []))


def prefix_end(prefix):
    b = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\x00"
    b[-1] += 1
    return bytes(b)


def err_text(e):
    ctx = e.__context__
    if not callable(getattr(e, "code", None)) and ctx is not None and \
            callable(getattr(ctx, "code", None)):
        # python3-etcd3 re-raises some gRPC errors as its own classes
        return "%s (%s)" % (type(e).__name__, err_text(ctx))
    code = getattr(e, "code", None)
    details = getattr(e, "details", None)
    if callable(code) and callable(details):
        try:
            return "%s %s: %s" % (type(e).__name__, code().name, details())
        except Exception:
            pass
    return "%s: %s" % (type(e).__name__, str(e).replace("\n", " ")[:200])


def log(msg):
    sys.stderr.write("wl_client: %s\n" % msg)
    sys.stderr.flush()


def evtype(ev):
    return PUT if ev.type == 0 else DELETE


def b2s(b):
    return b.decode("utf-8", errors="backslashreplace")


# ================================================================ scenario


class Transcript:
    def __init__(self):
        self.leases = {}

    def lease(self, lid):
        if lid == 0:
            return "0"
        if lid not in self.leases:
            self.leases[lid] = "L%d" % (len(self.leases) + 1)
        return self.leases[lid]

    def p(self, *parts):
        print(" ".join(str(x) for x in parts))
        sys.stdout.flush()

    def kv(self, kv):
        return "%s=%s c=%d m=%d v=%d lease=%s" % (
            b2s(kv.key), b2s(kv.value), kv.create_revision, kv.mod_revision,
            kv.version, self.lease(kv.lease))

    def event(self, ev):
        s = "  %s %s" % (evtype(ev), self.kv(ev.kv))
        if ev.HasField("prev_kv"):
            s += " | prev " + self.kv(ev.prev_kv)
        return s


def sc_watch(t, c, label, key, nevents, timeout=5.0, prefix=False,
             after=None, **kw):
    """Opens a watch through the etcd3 callback API, runs after() (if
    given), collects responses until nevents events (or an error, or the
    timeout), waits 0.3 s more for unexpected extras, cancels, prints."""
    q = queue.Queue()
    try:
        if prefix:
            wid = c.add_watch_prefix_callback(key, q.put, **kw)
        else:
            wid = c.add_watch_callback(key, q.put, **kw)
    except Exception as e:
        t.p("watch", label, "create error:", err_text(e))
        return []
    if after is not None:
        after()
    resps = []
    n = 0
    deadline = time.time() + timeout
    extra_wait = None
    while True:
        now = time.time()
        if n >= nevents:
            if extra_wait is None:
                extra_wait = now + 0.3
            left = extra_wait - now
        else:
            left = deadline - now
        if left <= 0:
            break
        try:
            r = q.get(timeout=left)
        except queue.Empty:
            break
        resps.append(r)
        if isinstance(r, Exception):
            break
        n += len(r.events)
    c.cancel_watch(wid)
    t.p("watch", label, "responses=%d events=%d" % (len(resps), n))
    for r in resps:
        if isinstance(r, Exception):
            extra = ""
            if hasattr(r, "compacted_revision"):
                extra = " compacted_revision=%d" % r.compacted_revision
            t.p("  error", type(r).__name__ + extra)
            continue
        t.p(" response header.revision=%d events=%d" % (
            r.header.revision, len(r.events)))
        for ev in r.events:
            t.p(t.event(ev._event))
    return resps


def sc_raw_watch(t, endpoint, label, prefix, nevents, timeout=5.0, **kw):
    """A watch through the raw stub (for what python3-etcd3 cannot send):
    prints every response, created one included."""
    ch = channel(endpoint)
    stop = threading.Event()
    creq = etcdrpc.WatchCreateRequest(key=prefix.encode(),
                                      range_end=prefix_end(prefix), **kw)

    def reqs():
        yield etcdrpc.WatchRequest(create_request=creq)
        stop.wait()
    call = etcdrpc.WatchStub(ch).Watch(reqs())
    timer = threading.Timer(timeout, call.cancel)
    timer.start()
    n = 0
    t.p("raw watch", label)
    try:
        for r in call:
            t.p(" response header.revision=%d created=%s canceled=%s "
                "compact_revision=%d events=%d" % (
                    r.header.revision, r.created, r.canceled,
                    r.compact_revision, len(r.events)))
            for ev in r.events:
                t.p(t.event(ev))
            n += len(r.events)
            if n >= nevents or r.canceled:
                break
    except grpc.RpcError as e:
        t.p("  error", err_text(e))
    timer.cancel()
    stop.set()
    call.cancel()
    ch.close()


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fbytes(num, b):
    return _varint(num << 3 | 2) + _varint(len(b)) + b


def _fvarint(num, v):
    return _varint(num << 3) + _varint(v)


def raw_create(key, range_end=None, start=0, prev_kv=False, watch_id=None,
               fragment=False):
    """WatchRequest{create_request} bytes, with the fields etcd 3.4 has and
    python3-etcd3's old stubs lack (watch_id = 7, fragment = 8)."""
    c = etcdrpc.WatchCreateRequest(key=key, start_revision=start,
                                   prev_kv=prev_kv)
    if range_end is not None:
        c.range_end = range_end
    body = c.SerializeToString()
    if watch_id is not None:
        body += _fvarint(7, watch_id)
    if fragment:
        body += _fvarint(8, 1)
    return _fbytes(1, body)


def raw_cancel(watch_id):
    return etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(
        watch_id=watch_id)).SerializeToString()


RAW_PROGRESS = _fbytes(3, b"")  # WatchRequest{progress_request: {}}


def sc_raw_stream(t, endpoint, kv):
    """One Watch stream carrying many requests, built byte by byte. Each
    step sends one request (or makes one write) and collects responses
    until the number etcd sends (or 3 s), plus 0.2 s for extras; responses
    of one step are printed ordered by watch ID (etcd serves the watchers
    of a revision in no fixed order)."""
    ch = channel(endpoint)
    q = queue.Queue()
    out = queue.Queue()

    def reqs():
        while True:
            b = q.get()
            if b is None:
                return
            yield b
    call = ch.stream_stream(
        "/etcdserverpb.Watch/Watch", request_serializer=lambda b: b,
        response_deserializer=etcdrpc.WatchResponse.FromString)(reqs())

    def reader():
        try:
            for r in call:
                out.put(r)
            out.put("end of stream (status OK)")
        except grpc.RpcError as e:
            out.put("end of stream: " + err_text(e))
    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def step(label, n, send=None, write=None):
        if send is not None:
            q.put(send)
        if write is not None:
            write()
        got = []
        deadline = time.time() + 3.0
        grace = None
        while True:
            now = time.time()
            if len(got) >= n and grace is None:
                grace = now + 0.2
            end = grace if grace is not None else deadline
            if now >= end:
                break
            try:
                got.append(out.get(timeout=end - now))
            except queue.Empty:
                break
        t.p("raw stream:", label, "-> %d responses" % len(got))
        msgs = [g for g in got if isinstance(g, str)]
        rs = sorted((g for g in got if not isinstance(g, str)),
                    key=lambda r: r.watch_id)
        for r in rs:
            t.p("  id=%d created=%s canceled=%s compact_revision=%d "
                "reason=%r header.revision=%d events=%d" % (
                    r.watch_id, r.created, r.canceled, r.compact_revision,
                    r.cancel_reason, r.header.revision, len(r.events)))
            for ev in r.events:
                t.p(t.event(ev))
        for m in msgs:
            t.p("  " + m)

    def put(k, v):
        return lambda: kv.put(k, v)

    step("create key wr/a", 1, raw_create(b"wr/a"))
    step("create prefix wr/ prev_kv", 1,
         raw_create(b"wr/", prefix_end("wr/"), prev_kv=True))
    step("create wr/b with watch_id 7", 1, raw_create(b"wr/b", watch_id=7))
    step("create wr/c with watch_id 7 again", 1,
         raw_create(b"wr/c", watch_id=7))
    step("put wr/a", 2, write=put("wr/a", "1"))
    step("put wr/b", 2, write=put("wr/b", "2"))
    step("progress request", 1, RAW_PROGRESS)
    step("cancel the prefix watch (id 1)", 1, raw_cancel(1))
    step("cancel unknown id 42", 0, raw_cancel(42))
    step("put wr/a again", 1, write=put("wr/a", "3"))
    step("create range [wr/z, wr/a) (reversed)", 1,
         raw_create(b"wr/z", b"wr/a"))
    step("create from a compacted revision", 2, raw_create(b"wr/", b"wr0",
                                                          start=2))
    step("create empty key, range end \\0 (everything)", 1,
         raw_create(b"", b"\x00"))
    step("put wr/d", 2, write=put("wr/d", "4"))
    step("create empty key alone", 1, raw_create(b""))
    step("create fragment=true on wr/f", 1,
         raw_create(b"wr/f", fragment=True))
    step("put wr/f", 2, write=put("wr/f", "5"))
    step("cancel id 3 (the watch on everything)", 1, raw_cancel(3))
    step("half-close, then put wr/a", 1,
         None, write=lambda: (q.put(None), time.sleep(0.2),
                              kv.put("wr/a", "6")))
    call.cancel()
    ch.close()


def sc_try(t, label, fn):
    try:
        r = fn()
        t.p(label, "ok")
        return r
    except Exception as e:
        t.p(label, "error:", err_text(e))
        return None


def cmd_scenario(a):
    t = Transcript()
    c = client(a.endpoint, 5.0)
    P = a.prefix
    t0 = time.time()

    # --- KV through the client API
    r = c.put(P + "a", "1")
    t.p("put a=1 rev", r.header.revision)
    r = c.put(P + "b", "2")
    t.p("put b=2 rev", r.header.revision)
    r = c.put(P + "a", "3", prev_kv=True)
    t.p("put a=3 prev_kv rev", r.header.revision, "prev", t.kv(r.prev_kv))
    r = c.put(P + "c", "4", prev_kv=True)
    t.p("put c=4 prev_kv rev", r.header.revision, "has prev",
        r.HasField("prev_kv"))
    v, m = c.get(P + "a")
    t.p("get a", b2s(v), "c=%d m=%d v=%d lease=%s" % (
        m.create_revision, m.mod_revision, m.version, t.lease(m.lease_id)))
    v, m = c.get(P + "nothing")
    t.p("get nothing", v, m)
    for v, m in c.get_prefix(P):
        t.p("get_prefix", b2s(m.key), b2s(v), m.mod_revision)
    t.p("delete b", c.delete(P + "b"))
    t.p("delete missing", c.delete(P + "missing"))
    r = c.delete(P + "c", prev_kv=True, return_response=True)
    t.p("delete c prev_kv deleted=%d rev=%d prev" % (
        r.deleted, r.header.revision), [t.kv(kv) for kv in r.prev_kvs])
    ok, resps = c.transaction(
        compare=[],
        success=[c.transactions.put(P + "t1", "x"),
                 c.transactions.put(P + "t2", "y"),
                 c.transactions.delete(P + "a")],
        failure=[])
    t.p("txn put t1 put t2 delete a:", ok, len(resps))
    ok, _ = c.transaction(
        compare=[c.transactions.value(P + "t1") == "nope"],
        success=[c.transactions.put(P + "t1", "never")],
        failure=[c.transactions.put(P + "t3", "z")])
    t.p("txn failing compare:", ok)
    rev_now = c.get(P + "t1")[1].response_header.revision
    t.p("revision now", rev_now)

    # --- history replay: every change since revision 1 / 2
    sc_watch(t, c, "key a from rev 1", P + "a", 3, start_revision=1)
    sc_watch(t, c, "prefix from rev 2 prev_kv", P, 9, prefix=True,
             start_revision=2, prev_kv=True)
    sc_watch(t, c, "range [b, t2) from rev 1", P + "b", 4,
             range_end=P + "t2", start_revision=1)
    # (python3-etcd3 0.12 cannot send filters: raw stub)
    sc_raw_watch(t, a.endpoint, "prefix from rev 1, no PUT", P, 3,
                 start_revision=1,
                 filters=[etcdrpc.WatchCreateRequest.NOPUT])
    sc_raw_watch(t, a.endpoint, "prefix from rev 1, no DELETE, prev_kv", P,
                 7, start_revision=1, prev_kv=True,
                 filters=[etcdrpc.WatchCreateRequest.NODELETE])
    sc_watch(t, c, "from the txn revision", P, 4, prefix=True,
             start_revision=rev_now - 1, prev_kv=True)

    # --- live watches, start revision in the future, cancel
    def live_writes():
        c.put(P + "live", "l1")
        c.put(P + "live", "l2")
        c.delete(P + "live")
    sc_watch(t, c, "live key", P + "live", 3, after=live_writes,
             prev_kv=True)
    rev_now = c.put(P + "probe", "p").header.revision
    t.p("revision now", rev_now)

    def future_writes():
        c.put(P + "fut", "f1")  # rev_now + 1: before the start revision
        c.put(P + "fut", "f2")
        c.put(P + "fut", "f3")
    sc_watch(t, c, "start revision in the future", P + "fut", 2,
             after=future_writes, start_revision=rev_now + 2)
    q = queue.Queue()
    wid = c.add_watch_callback(P + "cancelled", q.put)
    c.cancel_watch(wid)
    time.sleep(0.1)
    c.put(P + "cancelled", "x")
    time.sleep(0.4)
    t.p("responses after cancel:", q.qsize())
    # the same watch through the iterator API, cancelled from outside
    it, cancel = c.watch(P + "iter")
    c.put(P + "iter", "i1")
    ev = next(it)
    t.p("iterator event", evtype(ev._event), t.kv(ev._event.kv))
    cancel()
    t.p("iterator after cancel:", list(it))

    # --- leases
    lease = c.lease(30)
    t.p("lease granted", t.lease(lease.id), "ttl", lease.ttl)
    c.put(P + "l/1", "x", lease=lease)
    c.put(P + "l/2", "y", lease=lease.id)
    v, m = c.get(P + "l/1")
    t.p("get l/1", b2s(v), "lease", t.lease(m.lease_id))
    info = c.get_lease_info(lease.id)
    t.p("lease info", t.lease(info.ID), "granted", info.grantedTTL,
        "remaining in [27,30]", 27 <= info.TTL <= 30,
        "keys", sorted(b2s(k) for k in info.keys))
    t.p("remaining_ttl in [27,30]", 27 <= lease.remaining_ttl <= 30,
        "granted_ttl", lease.granted_ttl)
    rs = lease.refresh()
    t.p("refresh responses", len(rs),
        [(t.lease(x.ID), x.TTL) for x in rs])
    rs = list(c.refresh_lease(lease.id))
    t.p("refresh_lease responses", [(t.lease(x.ID), x.TTL) for x in rs])
    sc_watch(t, c, "revoke deletes the lease's keys", P + "l/", 2,
             prefix=True, after=lease.revoke, prev_kv=True)
    info = c.get_lease_info(lease.id)
    t.p("lease info after revoke", t.lease(info.ID), "ttl", info.TTL,
        "granted", info.grantedTTL, "keys", list(info.keys))
    rs = sc_try(t, "refresh revoked", lease.refresh)
    if rs is not None:
        t.p("refresh revoked", [(t.lease(x.ID), x.TTL) for x in rs])
    sc_try(t, "revoke again", lease.revoke)
    info = c.get_lease_info(123456789)
    t.p("lease info of unknown lease", info.ID, "ttl", info.TTL,
        "granted", info.grantedTTL)
    sc_try(t, "put with unknown lease",
           lambda: c.put(P + "l/3", "z", lease=123456789))
    sc_try(t, "grant too large TTL", lambda: c.lease(9000000001))
    own = sc_try(t, "grant with ID", lambda: c.lease(40, lease_id=0x5eed))
    if own is not None:
        t.p("grant with ID ->", hex(own.id), own.ttl)
    sc_try(t, "grant same ID again", lambda: c.lease(40, lease_id=0x5eed))
    sc_try(t, "revoke own ID", lambda: c.revoke_lease(0x5eed))
    # the minimum TTL (1.5 election timeouts, rounded up: 2 s here) and a
    # real expiry: the watcher sees the DELETE of both keys in one revision
    short = c.lease(1)
    t.p("short lease granted", t.lease(short.id), "ttl", short.ttl)
    c.put(P + "e/1", "a", lease=short)
    c.put(P + "e/2", "b", lease=short)
    te = time.time()
    resps = sc_watch(t, c, "expiry", P + "e/", 2, timeout=8.0, prefix=True)
    took = time.time() - te
    log("short lease (TTL %d) expired %.2fs after its keys were put"
        % (short.ttl, took))
    t.p("expired within [1, 5] s", 1.0 <= took <= 5.0)
    info = c.get_lease_info(short.id)
    t.p("expired lease info ttl", info.TTL, "keys", list(info.keys))
    del resps

    # --- compaction: a watch from a compacted revision
    rev_now = c.put(P + "cmp", "c").header.revision
    c.compact(rev_now - 3)
    sc_watch(t, c, "watch from a compacted revision", P, 1, prefix=True,
             timeout=3.0, start_revision=2)
    sc_watch(t, c, "watch from the compaction revision", P + "cmp", 1,
             start_revision=rev_now - 3)
    sc_raw_stream(t, a.endpoint, c)
    t.p("status version set", bool(c.status().version))
    # (no c.close(): the module's watch thread would die noisily)
    log("scenario on %s took %.1fs" % (a.endpoint, time.time() - t0))
    return 0


# ================================================================= writers

DEFAULT_KEYS = ["s/a", "s/b", "s/c", "s/c/x", "s/ca", "s/d", "s/e", "s/f",
                "s/g", "s/h", "s/m", "s/n", "s/z"]


def cmd_write(a):
    eps = a.endpoints.split(",")
    keys = a.keys.split(",") if a.keys else DEFAULT_KEYS
    lock = threading.Lock()
    out = open(a.log, "w", buffering=1)
    counts = {"ok": 0, "noop": 0, "err": 0}
    stop_at = time.time() + a.seconds

    def record(rev, evs, w, ep):
        with lock:
            out.write(json.dumps({"rev": rev, "ev": evs, "w": w,
                                  "ep": ep}) + "\n")
            counts["ok"] += 1

    def worker(w):
        rng = random.Random(a.seed * 1000 + w)
        ep = eps[w % len(eps)]
        ch = channel(ep)
        kv = etcdrpc.KVStub(ch)
        n = 0
        while time.time() < stop_at:
            n += 1
            val = "w%d-%d" % (w, n)
            op = rng.random()
            try:
                if op < 0.55:
                    k = rng.choice(keys)
                    r = kv.Put(etcdrpc.PutRequest(key=k.encode(),
                                                  value=val.encode()),
                               timeout=a.timeout)
                    record(r.header.revision, [[PUT, k, val]], w, ep)
                elif op < 0.75 or op >= 0.9:
                    ks = rng.sample(keys, 3)
                    ops = []
                    if op < 0.75:  # 2 or 3 puts
                        cnt = rng.choice([2, 3])
                        for i, k in enumerate(ks[:cnt]):
                            ops.append(etcdrpc.RequestOp(
                                request_put=etcdrpc.PutRequest(
                                    key=k.encode(),
                                    value=("%s.%d" % (val, i)).encode())))
                        exp = [[PUT, k, "%s.%d" % (val, i)]
                               for i, k in enumerate(ks[:cnt])]
                        dk = None
                    else:  # put + delete of another key
                        ops.append(etcdrpc.RequestOp(
                            request_put=etcdrpc.PutRequest(
                                key=ks[0].encode(), value=val.encode())))
                        dk = ks[1]
                        ops.append(etcdrpc.RequestOp(
                            request_delete_range=etcdrpc.DeleteRangeRequest(
                                key=dk.encode(), prev_kv=True)))
                        exp = [[PUT, ks[0], val]]
                    r = kv.Txn(etcdrpc.TxnRequest(success=ops),
                               timeout=a.timeout)
                    if dk is not None:
                        d = r.responses[1].response_delete_range
                        for p in d.prev_kvs:
                            exp.append([DELETE, b2s(p.key), ""])
                    record(r.header.revision, exp, w, ep)
                elif op < 0.85:
                    k = rng.choice(keys)
                    r = kv.DeleteRange(etcdrpc.DeleteRangeRequest(
                        key=k.encode(), prev_kv=True), timeout=a.timeout)
                    if r.deleted:
                        record(r.header.revision,
                               [[DELETE, b2s(p.key), ""]
                                for p in r.prev_kvs], w, ep)
                    else:
                        with lock:
                            counts["noop"] += 1
                else:
                    r = kv.DeleteRange(etcdrpc.DeleteRangeRequest(
                        key=b"s/d", range_end=b"s/h", prev_kv=True),
                        timeout=a.timeout)
                    if r.deleted:
                        if r.deleted != len(r.prev_kvs):
                            log("deleted=%d but %d prev_kvs" % (
                                r.deleted, len(r.prev_kvs)))
                        record(r.header.revision,
                               [[DELETE, b2s(p.key), ""]
                                for p in r.prev_kvs], w, ep)
                    else:
                        with lock:
                            counts["noop"] += 1
            except grpc.RpcError as e:
                with lock:
                    counts["err"] += 1
                log("writer %d via %s: %s" % (w, ep, err_text(e)))
                time.sleep(0.05)
        ch.close()

    ths = [threading.Thread(target=worker, args=(w,))
           for w in range(a.threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    if a.sentinel:
        ch = channel(eps[0])
        r = etcdrpc.KVStub(ch).Put(etcdrpc.PutRequest(
            key=a.sentinel.encode(), value=b"end"), timeout=a.timeout)
        record(r.header.revision, [[PUT, a.sentinel, "end"]], -1, eps[0])
        ch.close()
    out.close()
    print("writers: %d writes made a revision, %d deletes found nothing, "
          "%d failed" % (counts["ok"], counts["noop"], counts["err"]))
    return 3 if counts["err"] else 0


# ================================================================ watchers


def run_watcher(spec, outdir, sentinel, deadline, created_evt):
    """One watcher (see the module doc). Writes DIR/NAME.jsonl."""
    name = spec["name"]
    recs = []
    segs = 0
    start = spec.get("start", 0)
    ep = spec["ep"]
    resume_after = spec.get("resume_after", 0)
    slow = spec.get("slow", 0.0)
    stall = spec.get("stall", 0.0)
    stall_after = spec.get("stall_after", 1)
    done = False
    last_rev = 0
    while not done:
        segs += 1
        ch = channel(ep, small_window=bool(slow or stall))
        stub = etcdrpc.WatchStub(ch)
        stop = threading.Event()
        creq = etcdrpc.WatchCreateRequest(
            key=spec["key"].encode(), start_revision=start,
            prev_kv=bool(spec.get("prev_kv")))
        if spec.get("range_end"):
            creq.range_end = spec["range_end"].encode()

        def reqs(creq=creq, stop=stop):
            yield etcdrpc.WatchRequest(create_request=creq)
            stop.wait()

        call = stub.Watch(reqs())
        timer = threading.Timer(max(0.1, deadline - time.time()),
                                call.cancel)
        timer.daemon = True
        timer.start()
        recs.append({"t": "open", "ep": ep, "start": start, "seg": segs,
                     "at": time.time()})
        nresp = 0
        drop = False
        try:
            for r in call:
                rec = {"t": "resp", "rev": r.header.revision,
                       "id": r.watch_id, "at": time.time()}
                if r.created:
                    rec["created"] = True
                    created_evt.set()
                if r.canceled:
                    rec["canceled"] = True
                    rec["reason"] = r.cancel_reason
                if r.compact_revision:
                    rec["compact"] = r.compact_revision
                evs = []
                for ev in r.events:
                    e = [evtype(ev), b2s(ev.kv.key), b2s(ev.kv.value),
                         ev.kv.mod_revision]
                    if ev.HasField("prev_kv"):
                        e.append([b2s(ev.prev_kv.value),
                                  ev.prev_kv.mod_revision])
                    evs.append(e)
                    last_rev = ev.kv.mod_revision
                    if ev.kv.key.decode() == sentinel:
                        done = True
                rec["ev"] = evs
                recs.append(rec)
                if r.canceled or r.compact_revision:
                    done = True
                if done:
                    break
                if evs:
                    nresp += 1
                    if slow:
                        time.sleep(slow)
                    if stall and nresp == stall_after:
                        recs.append({"t": "stall", "secs": stall,
                                     "at": time.time()})
                        time.sleep(stall)
                    if resume_after and segs == 1 and nresp >= resume_after:
                        drop = True
                        break
        except grpc.RpcError as e:
            recs.append({"t": "error", "err": err_text(e),
                         "at": time.time()})
            done = True
        finally:
            timer.cancel()
            stop.set()
            call.cancel()
            ch.close()
        if drop and not done:
            start = last_rev + 1
            ep = spec.get("resume_ep", ep)
            recs.append({"t": "resume", "from": start, "ep": ep})
        elif not done:
            recs.append({"t": "ended", "at": time.time()})
            done = True
    with open(os.path.join(outdir, name + ".jsonl"), "w") as f:
        for rec in recs:
            f.write(json.dumps(rec) + "\n")


def cmd_watchers(a):
    with open(a.spec) as f:
        specs = json.load(f)
    deadline = time.time() + a.timeout
    t0 = time.time()
    ths = []
    first = []
    for s in specs:
        evt = threading.Event()

        def go(s=s, evt=evt):
            d = t0 + s.get("delay", 0) - time.time()
            if d > 0:
                time.sleep(d)
            try:
                run_watcher(s, a.outdir, a.sentinel, deadline, evt)
            except Exception as e:  # recorded for the checker
                evt.set()
                with open(os.path.join(a.outdir, s["name"] + ".jsonl"),
                          "a") as f:
                    f.write(json.dumps({"t": "error",
                                        "err": err_text(e)}) + "\n")
        th = threading.Thread(target=go)
        th.start()
        ths.append(th)
        if not s.get("delay"):
            first.append(evt)
    for evt in first:
        evt.wait(max(0.1, deadline - time.time()))
    with open(a.ready, "w") as f:
        f.write("%f\n" % time.time())
    for th in ths:
        th.join()
    return 0


# =================================================================== check


def in_range(key, start, end):
    if not end:
        return key == start
    if end == "\x00":
        return key >= start
    return start <= key < end


def load_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def cmd_check(a):
    with open(a.spec) as f:
        specs = {s["name"]: s for s in json.load(f)}
    hist = {}
    for w in load_jsonl(a.writes):
        if w["rev"] in hist:
            print("FAIL history: revision %d acknowledged twice (%s and %s)"
                  % (w["rev"], hist[w["rev"]], w["ev"]))
            return 1
        hist[w["rev"]] = w["ev"]
    if not hist:
        print("FAIL history: no write was acknowledged")
        return 1
    last = max(hist)
    missing = [r for r in range(2, last + 1) if r not in hist]
    if missing:
        print("FAIL history: revisions not accounted for by any "
              "acknowledged write: %s%s (%d)" % (
                  missing[:10], "..." if len(missing) > 10 else "",
                  len(missing)))
        return 1
    # expected events with prev kv (value, mod rev) from a replay
    flat = []
    state = {}
    for rev in range(2, last + 1):
        for typ, key, val in hist[rev]:
            prev = state.get(key)
            if typ == PUT:
                state[key] = (val, rev)
                flat.append((rev, typ, key, val, prev))
            else:
                if prev is None:
                    print("FAIL history: revision %d deletes %s which did "
                          "not exist" % (rev, key))
                    return 1
                del state[key]
                flat.append((rev, typ, key, "", prev))
    print("history: revisions 2..%d, %d events" % (last, len(flat)))
    bad = []
    seqs = {}
    for name in sorted(specs):
        s = specs[name]
        path = os.path.join(a.watchers, name + ".jsonl")
        if not os.path.exists(path):
            bad.append("%s: no record" % name)
            continue
        recs = load_jsonl(path)
        rs, re_ = s["key"], s.get("range_end", "")
        got = []  # (rev, type, key, value, prev or None, response index)
        segstart = []
        created_rev = None
        nresp = 0
        errs = [r for r in recs if r["t"] in ("error", "ended")]
        for r in errs:
            bad.append("%s: stream ended early: %s" % (name, r.get("err",
                                                                  "")))
        prev_last = 0
        ordered_bad = 0
        resp_revs = []
        stalled = None  # [responses, max revisions per response] after
        for r in recs:
            if r["t"] == "stall":
                stalled = [0, 0]
                continue
            if r["t"] == "resume":
                segstart.append((len(got), r["from"]))
                continue
            if r["t"] != "resp":
                continue
            if r.get("created") and created_rev is None:
                created_rev = r["rev"]
            if r.get("canceled") or r.get("compact"):
                bad.append("%s: canceled by the server (%s, compact %s)" % (
                    name, r.get("reason"), r.get("compact")))
            if not r["ev"]:
                continue
            nresp += 1
            revs = [e[3] for e in r["ev"]]
            if revs != sorted(revs) or revs[0] <= prev_last:
                ordered_bad += 1
                if ordered_bad <= 3:
                    bad.append("%s: ordered: response %d has revisions %s "
                               "after revision %d" % (
                                   name, nresp, revs[:8], prev_last))
            prev_last = revs[-1]
            resp_revs.append(sorted(set(revs)))
            if stalled is not None:
                stalled[0] += 1
                stalled[1] = max(stalled[1], len(set(revs)))
            for e in r["ev"]:
                prev = tuple(e[4]) if len(e) > 4 else None
                got.append((e[3], e[0], e[1], e[2], prev, nresp))
        start = s.get("start", 0)
        if not start:
            if created_rev is None:
                bad.append("%s: never created" % name)
                continue
            start = created_rev + 1
        want_prev = bool(s.get("prev_kv"))
        exp = [(rev, typ, key, val, prev if want_prev else None)
               for rev, typ, key, val, prev in flat
               if rev >= start and in_range(key, rs, re_)]
        seq = [g[:5] for g in got]
        # unique
        seen = set()
        dups = 0
        for g in seq:
            k = (g[0], g[2])
            if k in seen:
                dups += 1
            seen.add(k)
        if dups:
            bad.append("%s: unique: %d events delivered more than once" % (
                name, dups))
        # atomic: each response carries whole revisions
        by_rev_exp = {}
        for e in exp:
            by_rev_exp.setdefault(e[0], []).append(e)
        by_resp = {}
        for g in got:
            by_resp.setdefault((g[5], g[0]), []).append(g[:5])
        split = [k for k, v in by_resp.items()
                 if by_rev_exp.get(k[1]) is not None
                 and len(v) != len(by_rev_exp[k[1]])]
        if split:
            k = split[0]
            bad.append("%s: atomic: %d revisions split over responses, "
                       "e.g. revision %d: %d of %d events in response %d" % (
                           name, len(split), k[1], len(by_resp[k]),
                           len(by_rev_exp[k[1]]), k[0]))
        # reliable
        if seq != [tuple(e) for e in exp]:
            i = 0
            while i < min(len(seq), len(exp)) and seq[i] == tuple(exp[i]):
                i += 1
            bad.append("%s: reliable: %d events received, %d expected; "
                       "first difference at #%d: got %s, expected %s" % (
                           name, len(seq), len(exp), i,
                           seq[i] if i < len(seq) else "(end)",
                           tuple(exp[i]) if i < len(exp) else "(end)"))
        # resumable
        for idx, frm in segstart:
            part = seq[idx:]
            rest = [tuple(e) for e in exp if e[0] >= frm]
            if part != rest:
                bad.append("%s: resumable: re-watch from %d gave %d events, "
                           "expected the %d remaining ones" % (
                               name, frm, len(part), len(rest)))
            else:
                print("%s: resumed from revision %d after %d events: the "
                      "%d remaining events, exactly" % (
                          name, frm, idx, len(part)))
        seqs[name] = (start, seq)
        if stalled is not None:
            print("%s: after its %.1fs stall: %d responses, up to %d "
                  "revisions per response" % (name, s.get("stall", 0),
                                              stalled[0], stalled[1]))
        big = max((len(v) for v in resp_revs), default=0)
        print("%s: %s range [%s, %s) from revision %d%s: %d events in %d "
              "responses (up to %d revisions per response), expected %d" % (
                  name, s["ep"], rs, re_ or "(single key)", start,
                  " (live, created at %d)" % created_rev
                  if not s.get("start") else "",
                  len(seq), nresp, big, len(exp)))
    for pair in a.same or []:
        x, y = pair.split(",")
        if x not in seqs or y not in seqs:
            bad.append("same %s/%s: missing watcher" % (x, y))
            continue
        (sx, qx), (sy, qy) = seqs[x], seqs[y]
        st = max(sx, sy)
        qx = [g[:4] for g in qx if g[0] >= st]
        qy = [g[:4] for g in qy if g[0] >= st]
        if qx != qy:
            bad.append("identical: %s (%s) and %s (%s) differ from revision"
                       " %d: %d vs %d events" % (
                           x, specs[x]["ep"], y, specs[y]["ep"], st,
                           len(qx), len(qy)))
        else:
            print("identical: %s (%s) and %s (%s): the same %d events from "
                  "revision %d" % (x, specs[x]["ep"], y, specs[y]["ep"],
                                   len(qx), st))
    for b in bad:
        print("FAIL " + b)
    return 1 if bad else 0


# ================================================================= leases


def cmd_lease_failover(a):
    ch1 = channel(a.grant_ep)
    ch2 = channel(a.watch_ep)
    lease1 = etcdrpc.LeaseStub(ch1)
    kv1 = etcdrpc.KVStub(ch1)
    kv2 = etcdrpc.KVStub(ch2)
    lease2 = etcdrpc.LeaseStub(ch2)
    res = {"grant_ep": a.grant_ep, "watch_ep": a.watch_ep, "ttl": a.ttl}
    keys = [a.prefix + "k%d" % i for i in range(1, 4)]

    # watcher on the second member
    wq = queue.Queue()
    wstop = threading.Event()

    def wreqs():
        yield etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=a.prefix.encode(), range_end=prefix_end(a.prefix)))
        wstop.wait()

    wcall = etcdrpc.WatchStub(ch2).Watch(wreqs())

    def wloop():
        try:
            for r in wcall:
                wq.put((time.time(), r))
        except grpc.RpcError as e:
            wq.put((time.time(), e))
    wth = threading.Thread(target=wloop, daemon=True)
    wth.start()
    t, r = wq.get(timeout=10)
    if isinstance(r, Exception) or not r.created:
        print("FAIL: watch not created: %s" % r)
        return 1

    g = lease1.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=a.ttl), timeout=5)
    res["lease"] = "%016x" % g.ID
    res["granted_ttl"] = g.TTL
    for i, k in enumerate(keys):
        kv = kv1 if i % 2 == 0 else kv2
        kv.Put(etcdrpc.PutRequest(key=k.encode(), value=b"v", lease=g.ID),
               timeout=5)
    log("lease %016x TTL %d granted through %s, %d keys attached"
        % (g.ID, g.TTL, a.grant_ep, len(keys)))

    # keep-alives through the grant member, once a second
    nka = int(a.keepalive_secs) + 1
    sends = []
    kstop = threading.Event()

    def kreqs():
        for i in range(nka):
            sends.append(time.time())
            yield etcdrpc.LeaseKeepAliveRequest(ID=g.ID)
            if i + 1 < nka:
                time.sleep(1.0)
        kstop.wait(10)  # the stream stays open until the last answer

    kas = []
    call = lease1.LeaseKeepAlive(kreqs(), timeout=nka + 15)
    try:
        for resp in call:
            kas.append({"send": sends[len(kas)], "resp": time.time(),
                        "ttl": resp.TTL})
            if resp.TTL != g.TTL or resp.ID != g.ID:
                print("FAIL: keep-alive answered ID %x TTL %d, expected "
                      "%x %d" % (resp.ID, resp.TTL, g.ID, g.TTL))
                return 1
            if len(kas) == nka:
                break
    except grpc.RpcError as e:
        print("FAIL: keep-alive stream: %s" % err_text(e))
        return 1
    finally:
        kstop.set()
        call.cancel()
    if len(kas) != nka:
        print("FAIL: %d of %d keep-alives answered" % (len(kas), nka))
        return 1
    res["keepalives"] = kas
    res["last_send"] = kas[-1]["send"]
    res["last_resp"] = kas[-1]["resp"]
    with open(os.path.join(a.state, "last_keepalive.tmp"), "w") as f:
        json.dump({"send": res["last_send"], "resp": res["last_resp"]}, f)
    os.rename(os.path.join(a.state, "last_keepalive.tmp"),
              os.path.join(a.state, "last_keepalive"))
    log("%d keep-alives answered, the last at %.3f" % (len(kas),
                                                       res["last_resp"]))

    # TimeToLive trajectory (through the watch member) and DELETE events
    ttls = []
    deletes = []
    deadline = time.time() + a.timeout
    next_ttl = 0
    gone_at = None
    while time.time() < deadline:
        now = time.time()
        if now >= next_ttl and gone_at is None:
            next_ttl = now + 0.5
            try:
                r = lease2.LeaseTimeToLive(
                    etcdrpc.LeaseTimeToLiveRequest(ID=g.ID), timeout=1.0)
                ttls.append([round(now, 3), r.TTL])
                if r.TTL == -1:
                    gone_at = now
            except grpc.RpcError as e:
                ttls.append([round(now, 3), "%s(%s)" % (e.code().name,
                                                        e.details())])
        try:
            t, r = wq.get(timeout=0.1)
        except queue.Empty:
            if gone_at is not None and time.time() > gone_at + 3:
                break
            continue
        if isinstance(r, Exception):
            res["watch_error"] = err_text(r)
            break
        evs = [[evtype(e), b2s(e.kv.key), e.kv.mod_revision]
               for e in r.events]
        if any(e[0] == PUT for e in evs):
            # the puts of the keys (this watch started before them)
            res.setdefault("puts", []).extend(evs)
        elif evs:
            deletes.append({"at": t, "rev": r.header.revision, "ev": evs})
            got = sum(len(d["ev"]) for d in deletes)
            if got >= len(keys):
                break
    res["ttl_polls"] = ttls
    res["deletes"] = deletes
    # the keys must be gone and the lease unknown
    try:
        rr = kv2.Range(etcdrpc.RangeRequest(key=a.prefix.encode(),
                                            range_end=prefix_end(a.prefix)),
                       timeout=5)
        res["keys_left"] = [b2s(k.key) for k in rr.kvs]
        r = lease2.LeaseTimeToLive(etcdrpc.LeaseTimeToLiveRequest(ID=g.ID),
                                   timeout=5)
        res["final_ttl"] = r.TTL
    except grpc.RpcError as e:
        res["final_error"] = err_text(e)
    wstop.set()
    wcall.cancel()
    with open(os.path.join(a.state, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    ch1.close()
    ch2.close()
    return 0


def cmd_lease_verdict(a):
    with open(a.result) as f:
        res = json.load(f)
    ttl = res["granted_ttl"]
    bad = []
    last_send, last_resp = res["last_send"], res["last_resp"]
    print("keep-alives: %d, the last answered %.2fs before the kill" % (
        len(res["keepalives"]), a.kill - last_resp))
    polls = res.get("ttl_polls", [])
    shown = []
    for t, v in polls:
        shown.append("%+.1fs:%s" % (t - last_resp, v))
    print("TimeToLive after the last keep-alive: " + " ".join(shown[:60]))
    if res.get("watch_error"):
        bad.append("the watch stream failed: " + res["watch_error"])
    if len(res.get("puts", [])) != 3:
        bad.append("the watch saw %s instead of the 3 puts" % res.get("puts"))
    dels = res.get("deletes", [])
    evs = [e for d in dels for e in d["ev"]]
    if not dels:
        bad.append("no DELETE event within the timeout (lease never "
                   "expired?)")
    else:
        if any(e[0] != DELETE for e in evs):
            bad.append("unexpected events: %s" % evs)
        revs = sorted(set(e[2] for e in evs))
        if len(evs) != 3 or len(revs) != 1 or len(dels) != 1:
            bad.append("the 3 keys were not deleted in one revision / one "
                       "response: %s" % dels)
        t = dels[0]["at"]
        after_last = t - last_resp
        after_kill = t - a.kill
        after_leader = t - a.leader_seen
        print("RESULT lease_expiry_after_last_keepalive_s=%.2f "
              "after_kill_s=%.2f after_new_leader_seen_s=%.2f ttl=%d "
              "revision=%d server=%s" % (
                  after_last, after_kill, after_leader, ttl, revs[0],
                  a.server))
        # Never before the TTL has run out since the last keep-alive
        # (it was sent before last_resp: 0.3 s tolerance for that and for
        # the expiry check period of the old leader).
        lo = last_send + ttl - 0.3
        # At the latest: one full TTL after the new leader took over, plus
        # etcd's promotion extension (one election timeout), plus 1.5 s for
        # the 500 ms expiry check, the revoke's commit and the event.
        reset_bound = a.leader_seen + ttl + a.election_ms / 1000.0
        hi = max(last_resp + ttl, reset_bound) + 1.5
        kept = t <= last_resp + ttl + 1.5
        if t < lo:
            bad.append("expired %.2fs after the last keep-alive, before its "
                       "TTL of %ds (leases expired at the leader change?)"
                       % (after_last, ttl))
        elif t > hi:
            bad.append("expired %.2fs after the last keep-alive: later than"
                       " one TTL after the new leader (%.2fs)" % (
                           after_last, hi - last_resp))
        if kept:
            print("remaining TTL kept across the leader change: expired "
                  "%.2fs after the last keep-alive (TTL %d)" % (after_last,
                                                                ttl))
        else:
            print("remaining TTL reset at the leader change: expired %.2fs "
                  "after the new leader was seen (etcd 3.4 without lease "
                  "checkpoints: promotion gives every lease its full TTL "
                  "plus one election timeout)" % after_leader)
            if a.strict:
                bad.append("--strict: the remaining TTL was reset by the "
                           "leader change")
    if res.get("keys_left"):
        bad.append("keys still there at the end: %s" % res["keys_left"])
    if res.get("final_ttl", -1) != -1:
        bad.append("TimeToLive of the expired lease: %s (expected -1)"
                   % res.get("final_ttl"))
    if res.get("final_error"):
        bad.append("final read failed: " + res["final_error"])
    for b in bad:
        print("FAIL " + b)
    return 1 if bad else 0


# ============================================================ many watchers


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cmd_mem(a):
    import asyncio
    import grpc.aio as gaio

    res = {"endpoint": a.endpoint, "streams": a.streams,
           "per_stream": a.per_stream}
    res["rss_start_kb"] = vmrss_kb(a.pid)
    P = a.prefix
    total = a.streams * a.per_stream

    async def main():
        chans = [gaio.insecure_channel(a.endpoint, options=GRPC_OPTIONS)
                 for _ in range(a.channels)]
        received = [0]
        all_created = asyncio.Event()
        created = [0]
        per = {}
        calls = []

        errors_seen = []

        async def stream(s):
            # A stream that fails before all its watchers are created
            # (e.g. its connection had a transient failure) is opened again
            # (3 tries); its watchers died with it.
            for attempt in range(3):
                stub = etcdrpc.WatchStub(chans[s % len(chans)])
                call = stub.Watch(wait_for_ready=True)
                calls.append(call)
                n = 0
                try:
                    for i in range(a.per_stream):
                        await call.write(etcdrpc.WatchRequest(
                            create_request=etcdrpc.WatchCreateRequest(
                                key=("%s%03d/%03d" % (P, s, i)).encode())))
                    while True:
                        r = await call.read()
                        if r is gaio.EOF:
                            return
                        if r.created:
                            n += 1
                            per[s] = n
                            created[0] += 1
                            if created[0] == total:
                                all_created.set()
                        received[0] += len(r.events)
                except grpc.RpcError as e:
                    if len(errors_seen) < 5:
                        errors_seen.append("stream %d try %d: %s" % (
                            s, attempt + 1, err_text(e)))
                    if n == a.per_stream:
                        return
                    created[0] -= n
                    per[s] = 0
                    await asyncio.sleep(0.2)

        t0 = time.time()
        tasks = [asyncio.ensure_future(stream(s)) for s in range(a.streams)]
        try:
            await asyncio.wait_for(all_created.wait(), a.open_timeout)
        except asyncio.TimeoutError:
            res["opened"] = created[0]
            short = {s: n for s, n in per.items() if n < a.per_stream}
            res["incomplete_streams"] = len(short) + a.streams - len(per)
            res["stream_errors"] = errors_seen
            res["incomplete_detail"] = {
                "stream %d (channel %d)" % (s, s % len(chans)): per.get(s, 0)
                for s in range(a.streams) if per.get(s, 0) < a.per_stream}
            res["open_s"] = round(time.time() - t0, 2)
            for c in calls:
                c.cancel()
            for t in tasks:
                t.cancel()
            return 77
        res["opened"] = created[0]
        res["open_s"] = round(time.time() - t0, 2)
        res["stream_errors"] = errors_seen

        await asyncio.sleep(1.0)
        res["rss_watchers_kb"] = vmrss_kb(a.pid)

        # bursts: one put per watched key (txns of burst_batch puts)
        kvch = gaio.insecure_channel(a.endpoint, options=GRPC_OPTIONS)
        kv = etcdrpc.KVStub(kvch)
        value = b"x" * a.value_size
        keys = ["%s%03d/%03d" % (P, s, i) for s in range(a.streams)
                for i in range(a.per_stream)]
        batches = [keys[i:i + a.burst_batch]
                   for i in range(0, len(keys), a.burst_batch)]
        sem = asyncio.Semaphore(16)
        errors = [0]

        async def put_batch(b):
            async with sem:
                ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                    key=k.encode(), value=value)) for k in b]
                try:
                    await kv.Txn(etcdrpc.TxnRequest(success=ops), timeout=30)
                except grpc.RpcError:
                    errors[0] += 1

        async def burst(rnd):
            t1 = time.time()
            await asyncio.gather(*(put_batch(b) for b in batches))
            res["burst%d_s" % rnd] = round(time.time() - t1, 2)
            want = total * rnd
            deadline = time.time() + 20
            while received[0] < want and time.time() < deadline:
                await asyncio.sleep(0.1)
            res["deliver%d_s" % rnd] = round(time.time() - t1, 2)
            await asyncio.sleep(1.0)
            res["rss_burst%d_kb" % rnd] = vmrss_kb(a.pid)

        # round 1: every watcher reads
        await burst(1)
        # the consumer that never reads: its own connection (small window),
        # one watcher on everything with prev_kv; only the created
        # response is read
        lazy_ch = gaio.insecure_channel(a.endpoint,
                                        options=GRPC_OPTIONS + SMALL_WINDOW)
        lazy = etcdrpc.WatchStub(lazy_ch).Watch()
        await lazy.write(etcdrpc.WatchRequest(
            create_request=etcdrpc.WatchCreateRequest(
                key=P.encode(), range_end=prefix_end(P), prev_kv=True)))
        r = await lazy.read()
        res["lazy_created"] = bool(r.created)
        # rounds 2..: with the never-reading consumer (each of its events
        # carries ~2 values: 2 KiB per event)
        for rnd in range(2, a.rounds + 1):
            await burst(rnd)
        res["burst_events"] = total * a.rounds
        res["lazy_bytes"] = total * (a.rounds - 1) * a.value_size * 2
        res["burst_errors"] = errors[0]
        res["delivered"] = received[0]
        # the server must still answer, with the lazy stream still open
        try:
            r = await kv.Range(etcdrpc.RangeRequest(key=b"probe"), timeout=5)
            res["answers"] = True
            res["revision"] = r.header.revision
        except grpc.RpcError as e:
            res["answers"] = False
            res["answer_error"] = err_text(e)
        lazy.cancel()
        for c in calls:
            c.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(1.0)
        res["rss_end_kb"] = vmrss_kb(a.pid)
        for c in chans + [lazy_ch, kvch]:
            await c.close()
        return 0

    rc = asyncio.run(main())
    print("RESULT " + json.dumps(res))
    return rc


# ==================================================================== main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("scenario")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--prefix", default="wc/")

    p = sub.add_parser("write")
    p.add_argument("--endpoints", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sentinel", default="")
    p.add_argument("--keys", default="")
    p.add_argument("--timeout", type=float, default=5.0)

    p = sub.add_parser("watchers")
    p.add_argument("--spec", required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--sentinel", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--timeout", type=float, default=40)

    p = sub.add_parser("check")
    p.add_argument("--writes", required=True)
    p.add_argument("--watchers", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--same", action="append")

    p = sub.add_parser("lease-failover")
    p.add_argument("--grant-ep", required=True)
    p.add_argument("--watch-ep", required=True)
    p.add_argument("--ttl", type=int, default=10)
    p.add_argument("--keepalive-secs", type=float, default=4)
    p.add_argument("--prefix", default="lf/")
    p.add_argument("--state", required=True)
    p.add_argument("--timeout", type=float, default=30)

    p = sub.add_parser("lease-verdict")
    p.add_argument("--result", required=True)
    p.add_argument("--kill", type=float, required=True)
    p.add_argument("--leader-seen", type=float, required=True)
    p.add_argument("--ttl", type=int, required=True)
    p.add_argument("--election-ms", type=int, required=True)
    p.add_argument("--server", default="?")
    p.add_argument("--strict", action="store_true")

    p = sub.add_parser("mem")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--per-stream", type=int, default=100)
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--prefix", default="m/")
    p.add_argument("--burst-batch", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--open-timeout", type=float, default=40)

    a = ap.parse_args()
    fn = {"scenario": cmd_scenario, "write": cmd_write,
          "watchers": cmd_watchers, "check": cmd_check,
          "lease-failover": cmd_lease_failover,
          "lease-verdict": cmd_lease_verdict, "mem": cmd_mem}[a.cmd]
    return fn(a)


if __name__ == "__main__":
    sys.exit(main())
