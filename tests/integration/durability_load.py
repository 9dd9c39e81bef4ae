#!/usr/bin/python3
"""Write load and verification for durability.sh, over the etcd v3 gRPC API
(Debian's python3-etcd3).

  durability_load.py write HOST:PORT PREFIX COUNT ACKLOG [THREADS]
      Puts PREFIX%06d (i < COUNT) with value value_for(key) from THREADS
      threads, one key at a time per thread. After each acknowledged put
      appends "key<TAB>revision" to ACKLOG and flushes. Stops at the first
      error (the server is expected to be killed) and exits 0; exits 3 if
      it could not write anything at all.

  durability_load.py verify HOST:PORT ROOT MIN_REV ACKLOG...
      Reads every key under ROOT and checks that each acknowledged write is
      there with its value, create/mod revision equal to the acknowledged
      revision and version 1; that every other key under ROOT is one this
      tool could have written, with the right value (a write that committed
      but whose ack was lost); and that the store revision is at least
      MIN_REV and the highest acknowledged revision. Prints the store
      revision on the last line. Exits 1 on any violation.

  durability_load.py ping HOST:PORT
      Exits 0 if a range request succeeds.
"""

import sys
import threading

try:
    import etcd3
except ImportError:  # durability.sh skips the test on exit status 77
    sys.stderr.write("python3 module etcd3 is not available\n")
    sys.exit(77)


def value_for(key):
    # Deterministic, key-dependent, of varying length (27..226 bytes).
    n = sum(key.encode()) % 200
    return "v:" + key + ":" + ("x" * n)


def client(endpoint, timeout=5):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=timeout)


def cmd_write(endpoint, prefix, count, acklog, threads=2):
    c = client(endpoint)
    lock = threading.Lock()
    acked = [0]
    errors = []
    out = open(acklog, "a", buffering=1)

    def worker(t):
        for i in range(t, count, threads):
            key = "%s%06d" % (prefix, i)
            try:
                resp = c.put(key, value_for(key))
            except Exception as e:  # the kill -9 lands here
                with lock:
                    errors.append("%s: %s" % (key, type(e).__name__))
                return
            with lock:
                out.write("%s\t%d\n" % (key, resp.header.revision))
                out.flush()
                acked[0] += 1

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    out.close()
    print("write %s: %d acknowledged, %s" % (
        prefix, acked[0], ("stopped: " + "; ".join(errors)) if errors
        else "all written"))
    return 0 if acked[0] else 3


def cmd_verify(endpoint, root, min_rev, acklogs):
    acked = {}
    for path in acklogs:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                key, rev = line.split("\t")
                if key in acked:
                    print("FAIL: %s acknowledged twice" % key)
                    return 1
                acked[key] = int(rev)
    c = client(endpoint, timeout=20)
    resp = c.get_prefix_response(root)
    store_rev = resp.header.revision
    present = {}
    for kv in resp.kvs:
        present[kv.key.decode()] = kv
    bad = []
    for key, rev in sorted(acked.items()):
        kv = present.get(key)
        if kv is None:
            bad.append("acknowledged write lost: %s (rev %d)" % (key, rev))
            continue
        if kv.value.decode() != value_for(key):
            bad.append("wrong value for %s" % key)
        if kv.mod_revision != rev or kv.create_revision != rev:
            bad.append("%s: acknowledged at rev %d, stored create %d mod %d"
                       % (key, rev, kv.create_revision, kv.mod_revision))
        if kv.version != 1:
            bad.append("%s: version %d, expected 1" % (key, kv.version))
    extra = 0
    for key, kv in present.items():
        if key in acked:
            continue
        extra += 1
        if not key.startswith(root) or kv.value.decode() != value_for(key):
            bad.append("unexpected key or value: %r" % key)
    top = max(acked.values()) if acked else 0
    if store_rev < top:
        bad.append("store revision %d is below acknowledged revision %d"
                   % (store_rev, top))
    if store_rev < min_rev:
        bad.append("store revision went backwards: %d < %d"
                   % (store_rev, min_rev))
    for b in bad[:30]:
        print("FAIL: " + b)
    if len(bad) > 30:
        print("FAIL: ... %d more" % (len(bad) - 30))
    print("verify %s: %d acknowledged writes checked, %d keys present "
          "(%d committed without ack), store revision %d, highest "
          "acknowledged %d" % (root, len(acked), len(present), extra,
                               store_rev, top))
    print(store_rev)
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 6 and argv[1] == "write":
        threads = int(argv[6]) if len(argv) > 6 else 2
        return cmd_write(argv[2], argv[3], int(argv[4]), argv[5], threads)
    if len(argv) >= 6 and argv[1] == "verify":
        return cmd_verify(argv[2], argv[3], int(argv[4]), argv[5:])
    if len(argv) == 3 and argv[1] == "ping":
        client(argv[2], timeout=2).get("ping")
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
