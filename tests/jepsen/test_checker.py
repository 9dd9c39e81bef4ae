#!/usr/bin/python3
"""Unit tests of tests/jepsen/checker.py on hand-made histories (run by
make check; standard library only)."""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import checker  # noqa: E402

_ids = iter(range(1, 10**9))


def op(f, v, t0, t1, typ="ok", r=None, k="x", p=0):
    o = {"id": next(_ids), "p": p, "wl": "register", "f": f, "k": k,
         "v": v, "t0": t0, "t1": t1, "type": typ}
    if r is not None:
        o["r"] = r
    return o


def lin(ops):
    return checker.linearizable(ops, budget_s=10)[0]


class Register(unittest.TestCase):
    def test_sequential_ok(self):
        h = [op("write", 1, 0, 1), op("read", 1, 2, 3),
             op("cas", [1, 2], 4, 5, r=True), op("read", 2, 6, 7),
             op("cas", [1, 3], 8, 9, r=False), op("read", 2, 10, 11)]
        self.assertIs(lin(h), True)

    def test_initial_absent(self):
        self.assertIs(lin([op("read", None, 0, 1)]), True)
        self.assertIs(lin([op("read", 5, 0, 1)]), False)

    def test_concurrent_ok(self):
        # read overlaps the write: may see old or new value
        h = [op("write", 1, 0, 1), op("write", 2, 2, 6),
             op("read", 1, 3, 4), op("read", 2, 5, 7)]
        self.assertIs(lin(h), True)

    def test_stale_read_fails(self):
        # the read starts after the write of 2 completed, yet returns 1
        h = [op("write", 1, 0, 1), op("write", 2, 2, 3),
             op("read", 1, 4, 5)]
        self.assertIs(lin(h), False)

    def test_new_then_old_fails(self):
        # two sequential reads: 2 then 1 while the write of 2 is pending
        h = [op("write", 1, 0, 1), op("write", 2, 2, 10),
             op("read", 2, 3, 4), op("read", 1, 5, 6)]
        self.assertIs(lin(h), False)

    def test_unknown_write_may_have_happened(self):
        h = [op("write", 1, 0, 1), op("write", 2, 2, None, typ="info"),
             op("read", 2, 50, 51)]
        self.assertIs(lin(h), True)

    def test_unknown_write_may_not_have_happened(self):
        h = [op("write", 1, 0, 1), op("write", 2, 2, None, typ="info"),
             op("read", 1, 50, 51), op("read", 1, 60, 61)]
        self.assertIs(lin(h), True)

    def test_unknown_write_cannot_unhappen(self):
        h = [op("write", 1, 0, 1), op("write", 2, 2, None, typ="info"),
             op("read", 2, 50, 51), op("read", 1, 60, 61)]
        self.assertIs(lin(h), False)

    def test_failed_write_did_not_happen(self):
        h = [op("write", 1, 0, 1), op("write", 2, 2, 3, typ="fail"),
             op("read", 2, 4, 5)]
        self.assertIs(lin(h), False)

    def test_unknown_cas_both_ways(self):
        base = [op("write", 1, 0, 1), op("cas", [1, 7], 2, None, typ="info")]
        self.assertIs(lin(base + [op("read", 7, 5, 6)]), True)
        self.assertIs(lin(base + [op("read", 1, 5, 6)]), True)

    def test_failed_cas_must_see_other_value(self):
        h = [op("write", 1, 0, 1), op("cas", [1, 2], 2, 3, r=False)]
        self.assertIs(lin(h), False)

    def test_random_sequential_histories_pass(self):
        rnd = random.Random(7)
        for _ in range(30):
            state, t, h = None, 0.0, []
            for _ in range(60):
                c = rnd.random()
                if c < 0.4:
                    h.append(op("read", state, t, t + 0.5))
                elif c < 0.7:
                    v = rnd.randrange(5)
                    h.append(op("write", v, t, t + 0.5))
                    state = v
                else:
                    old, new = rnd.randrange(5), rnd.randrange(5)
                    h.append(op("cas", [old, new], t, t + 0.5,
                                r=(state == old)))
                    if state == old:
                        state = new
                t += 1
            self.assertIs(lin(h), True)

    def test_shrink_keeps_failure_small(self):
        h = [op("write", i, 10 * i, 10 * i + 1) for i in range(1, 30)]
        h.append(op("read", 3, 400, 401))
        w = checker.shrink_register(h)
        self.assertIs(lin(w), False)
        self.assertLessEqual(len(w), 3)
        self.assertIn(3, [o["v"] for o in w if o["f"] == "write"])

    def test_check_register_reports_key(self):
        h = [op("write", 1, 0, 1, k="a"), op("read", 1, 2, 3, k="a"),
             op("write", 1, 0, 1, k="b"), op("write", 2, 2, 3, k="b"),
             op("read", 1, 4, 5, k="b")]
        res = checker.check_register(h)
        self.assertEqual(res["keys"], 2)
        self.assertEqual([a["key"] for a in res["anomalies"]], ["b"])


def sop(f, v, t0, t1, typ="ok", k=1):
    return {"id": next(_ids), "p": 0, "wl": "set", "f": f, "k": k, "v": v,
            "t0": t0, "t1": t1, "type": typ}


def rd(a, b=None):
    return {"a": a, "b": a if b is None else b}


class Set(unittest.TestCase):
    def kinds(self, h):
        return sorted(a["kind"] for a in checker.check_set(h)["anomalies"])

    def test_ok(self):
        h = [sop("add", 1, 0, 1), sop("add", 2, 0.5, None, typ="info"),
             sop("read", rd([1]), 2, 3), sop("read", rd([1, 2]), 4, 5)]
        self.assertEqual(self.kinds(h), [])

    def test_lost(self):
        h = [sop("add", 1, 0, 1), sop("read", rd([]), 2, 3)]
        self.assertEqual(self.kinds(h), ["set-lost"])

    def test_phantom_and_torn(self):
        h = [sop("add", 1, 0, 1, typ="fail"),
             sop("read", rd([1]), 2, 3),
             sop("add", 2, 4, 5), sop("read", rd([2], []), 6, 7)]
        self.assertIn("set-phantom", self.kinds(h))
        self.assertIn("set-torn-txn", self.kinds(h))

    def test_disappeared(self):
        h = [sop("add", 1, 0, None, typ="info"),
             sop("read", rd([1]), 2, 3), sop("read", rd([]), 4, 5)]
        self.assertEqual(self.kinds(h), ["set-disappeared"])


class Watch(unittest.TestCase):
    def kinds(self, streams, first, last):
        return sorted(a["kind"] for a in
                      checker.check_watch(streams, first, last)["anomalies"])

    def test_ok(self):
        s = [[2, "a", "PUT", "1"], [3, "b", "PUT", "2"], [3, "c", "PUT", "3"]]
        self.assertEqual(self.kinds({"w1": s, "w2": list(s)}, 2, 3), [])

    def test_gap_dup_reorder_divergent(self):
        s = [[2, "a", "PUT", "1"], [3, "b", "PUT", "2"], [4, "c", "PUT", "3"]]
        self.assertEqual(self.kinds({"w1": s, "w2": [s[0], s[2]]}, 2, 4),
                         ["watch-gap"])
        self.assertEqual(self.kinds({"w1": s, "w2": s + [s[2]]}, 2, 4),
                         ["watch-duplicate"])
        self.assertIn("watch-reorder",
                      self.kinds({"w1": s, "w2": [s[1], s[0], s[2]]}, 2, 4))
        other = [s[0], [3, "b", "PUT", "X"], s[2]]
        self.assertEqual(self.kinds({"w1": s, "w2": other}, 2, 4),
                         ["watch-divergent"])
        self.assertEqual(self.kinds({"w1": s, "w2": s[:2]}, 2, 4),
                         ["watch-lagging"])


class Lock(unittest.TestCase):
    def test_overlap(self):
        h = [{"id": 1, "p": 1, "wl": "lock", "f": "hold", "v": [0, 2],
              "type": "ok"},
             {"id": 2, "p": 2, "wl": "lock", "f": "hold", "v": [1, 3],
              "type": "ok"},
             {"id": 3, "p": 1, "wl": "lock", "f": "hold", "v": [3, 4],
              "type": "ok"}]
        res = checker.check_lock(h)
        self.assertEqual(res["holds"], 3)
        self.assertEqual([(o["a"], o["b"]) for o in res["overlaps"]],
                         [(1, 2)])


if __name__ == "__main__":
    unittest.main()
