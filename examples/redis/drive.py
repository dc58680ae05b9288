#!/usr/bin/env python3
"""Drives one exec client by hand, without the harness: a quick check of a client and a target.

    python3 examples/redis/drive.py IPS [--seconds S | --ops N] [--mode mixed|writes]
                                        [--keys K] [--client CMD...]

Starts the client (by default `python3 examples/redis/client.py IPS`), sends it operations one at
a time as the harness would, and prints every change of outcome with its time since the start
(so a failover shows as a run of fail/info between two runs of ok), then a summary: outcomes per
function, ops/s, and the longest stretch without an ok.

--mode mixed   reads, writes and cases on K keys with values 0..4 (the register workload's shape).
--mode chain   each key counts up (1, 2, 3, ...) by cas [last acknowledged, last + 1]. A cas that
               finds another value is followed by a read: a value below the last acknowledged one
               means acknowledged updates were lost (counted: last acknowledged minus the value
               read; exact for one client). At the end every key is read back after a pause.
"""

import argparse
import json
import random
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ips")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--ops", type=int)
    ap.add_argument("--mode", choices=["mixed", "chain"], default="mixed")
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--settle", type=float, default=15.0,
                    help="chain mode: seconds to wait before the final reads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.seconds is None and args.ops is None:
        args.ops = 500
    rng = random.Random(args.seed)
    cmd = args.client or ["python3", "examples/redis/client.py", args.ips]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    next_id = 0

    def call(f, key, value):
        nonlocal next_id
        next_id += 1
        proc.stdin.write(json.dumps({"id": next_id, "f": f, "key": key, "value": value}) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            sys.exit("the client exited")
        ans = json.loads(line)
        assert ans["id"] == next_id, (ans, next_id)
        return ans

    start = time.monotonic()
    counts = {}
    last_state = None
    last_ok = start
    longest_gap = (0.0, 0.0, 0.0)  # length, from, to
    slowest = 0.0
    acked = {}  # chain mode: key -> last acknowledged value (None: never written)
    lost_seen = 0
    n = 0
    while True:
        now = time.monotonic()
        if args.ops is not None and n >= args.ops:
            break
        if args.seconds is not None and now - start >= args.seconds:
            break
        key = str(rng.randrange(args.keys))
        if args.mode == "chain":
            f = "cas"
            last = acked.get(key)
            value = [last, (last or 0) + 1]
        else:
            f = rng.choice(["read", "read", "write", "cas"])
            value = {"read": None, "write": rng.randrange(5),
                     "cas": [rng.randrange(5), rng.randrange(5)]}[f]
        t0 = time.monotonic()
        ans = call(f, key, value)
        t1 = time.monotonic()
        n += 1
        slowest = max(slowest, t1 - t0)
        kind = ans["type"]
        counts[(f, kind)] = counts.get((f, kind), 0) + 1
        if args.mode == "chain":
            if kind == "ok":
                acked[key] = value[1]
            elif ans.get("error") == "cas-mismatch":
                check = call("read", key, None)
                if check["type"] == "ok":
                    now_value = check["value"]
                    lost = (acked.get(key) or 0) - (now_value or 0)
                    if lost > 0:
                        lost_seen += lost
                        print(f"{time.monotonic() - start:8.3f}s  key {key}: read {now_value}, "
                              f"last acknowledged {acked.get(key)}: {lost} acknowledged updates "
                              "lost", flush=True)
                    acked[key] = now_value  # an earlier info cas may also have taken effect
        # "ok" and a cas-mismatch both mean a primary answered.
        answered = kind == "ok" or ans.get("error") == "cas-mismatch"
        state = "ok" if answered else f"{kind}: {ans.get('error', '')[:100]}"
        if state != last_state:
            print(f"{t0 - start:8.3f}s  {state}", flush=True)
            last_state = state
        if answered:
            if t1 - last_ok > longest_gap[0]:
                longest_gap = (t1 - last_ok, last_ok - start, t1 - start)
            last_ok = t1
    elapsed = time.monotonic() - start

    print(f"\n{n} ops in {elapsed:.2f} s: {n / elapsed:.0f} ops/s (one client process)")
    for (f, kind), c in sorted(counts.items()):
        print(f"  {f:5} {kind:4} {c}")
    print(f"longest stretch without an answer from a primary: {longest_gap[0]:.3f} s "
          f"(from {longest_gap[1]:.3f} s to {longest_gap[2]:.3f} s); slowest operation "
          f"{slowest:.3f} s")

    if args.mode == "chain":
        print(f"\nwaiting {args.settle:.0f} s, then reading every key back")
        time.sleep(args.settle)
        lost_total = lost_seen
        for key in sorted(acked, key=int):
            ans = call("read", key, None)
            final = ans.get("value")
            if ans["type"] != "ok":
                print(f"  key {key}: read failed: {ans}")
                continue
            lost = (acked[key] or 0) - (final or 0)
            lost_total += max(lost, 0)
            print(f"  key {key}: last acknowledged {acked[key]}, read {final}"
                  + (f": {lost} acknowledged updates lost" if lost > 0 else ""))
        print(f"acknowledged updates lost, in all: {lost_total}")
    proc.stdin.close()
    proc.wait()


if __name__ == "__main__":
    main()
