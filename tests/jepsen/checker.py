"""Checkers for the Jepsen-style fault tests (Python 3 standard library only).

History format: a list of operation dicts, one per completed (or abandoned)
client operation:

  {"id": int, "p": process, "wl": workload, "f": function, "k": key,
   "v": value, "t0": invoke time (s), "t1": completion time (s) or None,
   "type": "ok" | "fail" | "info", ...}

"info" means the outcome is unknown: the operation may or may not have taken
effect, at any time after its invocation (its completion is at infinity).
"fail" means it certainly did not take effect.

Register (check_register): per key, a Wing-Gong / Lowe linearizability
search with memoization of (set of linearized ops, register state), as
Knossos' and porcupine's checkers do. Functions:
  read  v=value read (None: key absent)
  write v=value written
  cas   v=[old, new]; ok ops carry "r": True (swapped) or False (compare
        failed, nothing written)
An info write or cas that "did not happen" is the same as one linearized
after everything else, so the model stays deterministic. Info and failed
reads constrain nothing and are dropped; failed writes too.

Set (check_set): adds are multi-key txns writing element e under two keys
(a/e and b/e) at once; reads return both sets. Anomalies: torn reads (a/b
sets differ), phantoms (an element that no add attempted, or only failed
adds), lost elements (an add acknowledged before a read began, or an element
seen by a read that ended before another began, missing from the later
read).

Watch (check_watch): every watcher records (revision, key, type, value) for
every event it received over the whole key space; revisions must be
strictly increasing across responses, events unique, every watcher must see
the same events for a revision, and every revision from the first to the
last one written must be seen by every watcher (no gaps).

Lock (check_lock): hold intervals of a lease-backed lock; overlapping holds
are mutual-exclusion violations. Reported, not counted as anomalies: a lease
lock alone cannot guarantee mutual exclusion (a holder that stalls past its
lease keeps believing it holds the lock).
"""

import math
import time

INF = math.inf


# --- register linearizability ----------------------------------------------

def _reg_step(state, op):
    """Apply op to the register state. Returns (ok, new_state)."""
    f = op["f"]
    if f == "read":
        return state == op["v"], state
    if f == "write":
        return True, op["v"]
    if f == "cas":
        old, new = op["v"]
        if op["type"] == "info":
            # took effect now (if it could) or never (= at the very end)
            return True, (new if state == old else state)
        if op.get("r"):
            return state == old, new
        return state != old, state
    raise ValueError("unknown register function %r" % (f,))


class _Entry:
    __slots__ = ("op", "idx", "is_call", "match", "prev", "next", "time")

    def __init__(self, op, idx, is_call, time_):
        self.op = op
        self.idx = idx
        self.is_call = is_call
        self.match = None
        self.prev = None
        self.next = None
        self.time = time_


def _prepare_register(ops):
    """Ops that constrain the register (drops fail ops and unknown reads)."""
    out = []
    for op in ops:
        if op["type"] == "fail":
            continue
        if op["type"] == "info" and op["f"] == "read":
            continue
        out.append(op)
    return out


def linearizable(ops, init=None, budget_s=60.0, max_states=3_000_000):
    """Wing-Gong/Lowe search over one key's ops.

    Returns (result, info): result True (linearizable), False (not), or
    None (gave up: budget exceeded); info holds "stuck" (the op whose
    completion could not be passed at the deepest point of the search),
    "depth" and "states".
    """
    ops = _prepare_register(ops)
    n = len(ops)
    if n == 0:
        return True, {"states": 0, "depth": 0, "stuck": None}
    entries = []
    for i, op in enumerate(ops):
        call = _Entry(op, i, True, op["t0"])
        t1 = op["t1"] if op["type"] == "ok" and op["t1"] is not None else INF
        ret = _Entry(op, i, False, t1)
        call.match = ret
        ret.match = call
        entries.append(call)
        entries.append(ret)
    # calls before returns at equal times: equal stamps count as concurrent
    entries.sort(key=lambda e: (e.time, 0 if e.is_call else 1, e.idx))
    head = _Entry(None, -1, False, -INF)
    prev = head
    for e in entries:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next is not None:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next is not None:
            m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    state = init
    linearized = 0
    cache = set()
    stack = []
    entry = head.next
    deadline = time.monotonic() + budget_s
    steps = 0
    best_depth = -1
    stuck = None
    while head.next is not None:
        steps += 1
        if steps & 0x3FFF == 0 and (time.monotonic() > deadline
                                    or len(cache) > max_states):
            return None, {"states": len(cache), "depth": best_depth,
                          "stuck": stuck}
        if entry.is_call:
            ok, new_state = _reg_step(state, entry.op)
            if ok:
                bits = linearized | (1 << entry.idx)
                key = (bits, new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized = bits
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if len(stack) > best_depth or stuck is None:
                best_depth = len(stack)
                stuck = entry.op
            if not stack:
                return False, {"states": len(cache), "depth": best_depth,
                               "stuck": stuck}
            top, state = stack.pop()
            linearized &= ~(1 << top.idx)
            unlift(top)
            entry = top.next
    return True, {"states": len(cache), "depth": n, "stuck": None}


def _values_closed(ops):
    """Every value a remaining read or cas observes is written by a
    remaining write/cas (or is the initial absent value)."""
    written = {None}
    for op in ops:
        if op["f"] == "write":
            written.add(op["v"])
        elif op["f"] == "cas" and (op["type"] == "info" or op.get("r")):
            written.add(op["v"][1])
    for op in ops:
        if op["f"] == "read" and op["v"] not in written:
            return False
        if op["f"] == "cas" and op.get("r") and op["v"][0] not in written:
            return False
    return True


def shrink_register(ops, budget_s=20.0):
    """A small non-linearizable sub-history of ops (which must not be
    linearizable): cut after the op the search got stuck on, then drop
    ops one at a time while the rest stays non-linearizable and every
    value read is still written by a remaining op."""
    ops = _prepare_register(ops)
    deadline = time.monotonic() + budget_s
    res, info = linearizable(ops, budget_s=budget_s)
    if res is not False:
        return ops
    stuck = info["stuck"]
    if stuck is not None and stuck["t1"] is not None:
        cut = [op for op in ops if op["t0"] <= stuck["t1"]]
        if linearizable(cut, budget_s=5)[0] is False:
            ops = cut
    cur = sorted(ops, key=lambda o: o["t0"])
    # drop blocks of ops, halving the block size when nothing goes, from
    # the end backwards (reads go before the writes they read from)
    chunk = max(1, len(cur) // 2)
    while time.monotonic() < deadline:
        changed = False
        i = len(cur) - chunk
        while i >= 0 and time.monotonic() < deadline:
            trial = cur[:i] + cur[i + chunk:]
            if trial and _values_closed(trial) and \
                    linearizable(trial, budget_s=2)[0] is False:
                cur = trial
                changed = True
            i -= chunk
        if not changed:
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)
    return cur


def check_register(history, budget_s=60.0):
    """Check every register key. Returns a dict with per-key results and
    the anomalies (one per non-linearizable key, with a shrunk witness)."""
    by_key = {}
    for op in history:
        if op.get("wl") == "register":
            by_key.setdefault(op["k"], []).append(op)
    anomalies = []
    unknown = []
    t_start = time.monotonic()
    for k in sorted(by_key):
        remaining = max(5.0, budget_s - (time.monotonic() - t_start))
        res, info = linearizable(by_key[k], budget_s=remaining)
        if res is False:
            # shrinking costs searches: only the first few get a witness
            witness = shrink_register(by_key[k]) if len(anomalies) < 5 \
                else []
            anomalies.append({"kind": "nonlinearizable-register", "key": k,
                              "ops": len(by_key[k]),
                              "stuck": info["stuck"],
                              "witness": witness})
        elif res is None:
            unknown.append(k)
    return {"keys": len(by_key), "anomalies": anomalies,
            "unknown_keys": unknown}


# --- set (multi-key txn) ------------------------------------------------------

def check_set(history):
    """Set workload check, per set generation (the key "k")."""
    anomalies = []
    gens = {}
    for op in history:
        if op.get("wl") == "set":
            gens.setdefault(op["k"], []).append(op)
    stats = {"gens": len(gens), "adds_ok": 0, "reads_ok": 0}
    for gen in sorted(gens):
        ops = gens[gen]
        adds = [o for o in ops if o["f"] == "add"]
        reads = sorted((o for o in ops if o["f"] == "read" and
                        o["type"] == "ok"), key=lambda o: o["t0"])
        stats["adds_ok"] += sum(1 for o in adds if o["type"] == "ok")
        stats["reads_ok"] += len(reads)
        attempted = {o["v"] for o in adds if o["type"] != "fail"}
        ok_adds = sorted((o for o in adds if o["type"] == "ok"),
                         key=lambda o: o["t1"])
        for r in reads:
            a, b = set(r["v"]["a"]), set(r["v"]["b"])
            if a != b:
                anomalies.append({"kind": "set-torn-txn", "gen": gen,
                                  "read": r["id"],
                                  "only_a": sorted(a - b)[:20],
                                  "only_b": sorted(b - a)[:20]})
            phantom = (a | b) - attempted
            if phantom:
                anomalies.append({"kind": "set-phantom", "gen": gen,
                                  "read": r["id"],
                                  "elements": sorted(phantom)[:20]})
            lost = [o["v"] for o in ok_adds if o["t1"] < r["t0"]
                    and o["v"] not in a]
            if lost:
                anomalies.append({"kind": "set-lost", "gen": gen,
                                  "read": r["id"], "elements": lost[:20],
                                  "count": len(lost)})
        # an element seen by an earlier (completed) read must stay
        seen_before = set()
        j = 0
        by_end = sorted(reads, key=lambda o: o["t1"])
        for r in reads:
            while j < len(by_end) and by_end[j]["t1"] < r["t0"]:
                seen_before |= set(by_end[j]["v"]["a"])
                j += 1
            gone = seen_before - set(r["v"]["a"])
            if gone:
                anomalies.append({"kind": "set-disappeared", "gen": gen,
                                  "read": r["id"],
                                  "elements": sorted(gone)[:20],
                                  "count": len(gone)})
    return {"stats": stats, "anomalies": anomalies}


# --- watch -------------------------------------------------------------------

def check_watch(streams, first_rev, last_rev):
    """streams: {watcher: [[rev, key, type, value], ...]} in arrival
    order; revisions first_rev..last_rev (inclusive) were written and every
    watcher claims to have caught up to last_rev (or it is reported as
    lagging)."""
    anomalies = []
    reference = {}
    for w in sorted(streams):
        evs = streams[w]
        prev_rev = None
        seen = set()
        groups = {}
        for ev in evs:
            rev = ev[0]
            if prev_rev is not None and rev < prev_rev:
                anomalies.append({"kind": "watch-reorder", "watcher": w,
                                  "rev": rev, "after": prev_rev})
            ident = (rev, ev[1], ev[2], ev[3])
            if ident in seen:
                anomalies.append({"kind": "watch-duplicate",
                                  "watcher": w, "event": ev})
            seen.add(ident)
            groups.setdefault(rev, []).append(tuple(ev[1:]))
            prev_rev = rev if prev_rev is None else max(prev_rev, rev)
        for rev, g in groups.items():
            g = list(dict.fromkeys(g))  # duplicates are reported above
            if rev in reference:
                if reference[rev][1] != g:
                    anomalies.append({"kind": "watch-divergent",
                                      "watcher": w, "rev": rev,
                                      "saw": g[:5],
                                      "other": reference[rev][0],
                                      "other_saw": reference[rev][1][:5]})
            else:
                reference[rev] = (w, g)
    for w in sorted(streams):
        revs = {ev[0] for ev in streams[w]}
        top = max(revs) if revs else first_rev - 1
        missing = [r for r in range(first_rev, min(top, last_rev) + 1)
                   if r not in revs]
        if missing:
            anomalies.append({"kind": "watch-gap", "watcher": w,
                              "missing": missing[:20],
                              "count": len(missing)})
        if top < last_rev:
            anomalies.append({"kind": "watch-lagging", "watcher": w,
                              "last_seen": top, "expected": last_rev})
    nowhere = [r for r in range(first_rev, last_rev + 1)
               if r not in reference]
    if nowhere and streams:
        anomalies.append({"kind": "watch-revision-never-seen",
                          "missing": nowhere[:20], "count": len(nowhere)})
    return {"watchers": len(streams),
            "revisions": last_rev - first_rev + 1 if last_rev >= first_rev
            else 0,
            "anomalies": anomalies}


# --- lock --------------------------------------------------------------------

def check_lock(history):
    """Overlapping holds of the lease lock (informational)."""
    holds = []
    for op in history:
        if op.get("wl") == "lock" and op["f"] == "hold" and \
                op["type"] == "ok":
            holds.append((op["v"][0], op["v"][1], op["p"], op["id"]))
    holds.sort()
    overlaps = []
    for i, (s, e, p, oid) in enumerate(holds):
        for s2, e2, p2, oid2 in holds[i + 1:]:
            if s2 >= e:
                break
            if p2 != p:
                overlaps.append({"a": oid, "b": oid2,
                                 "overlap_s": round(min(e, e2) - s2, 3)})
    return {"holds": len(holds), "overlaps": overlaps}
