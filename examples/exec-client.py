#!/usr/bin/env python3
"""A Faultline exec client for raftkv's HTTP API (docs/exec-protocol.md): exec-client.py HOST:PORT"""
import json, sys, urllib.error, urllib.parse, urllib.request

BASE = "http://" + sys.argv[1]
TIMEOUT = 1.5  # under the workload's op-timeout (2 s by default): answer info before being killed
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the node itself, no proxy

def http(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data, {"content-type": "application/json"}, method=method)
    try:
        with OPENER.open(req, timeout=TIMEOUT) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:  # raftkv's errors: {"error": NAME, "definite": BOOL}
        return e.code, json.load(e)

def answer(f, key, value):
    kv = "/kv/" + urllib.parse.quote(key, safe="")
    code, body = {
        "read": lambda: http("GET", kv),
        "write": lambda: http("PUT", kv, {"value": value}),
        "cas": lambda: http("POST", kv + "/cas", {"from": value[0], "to": value[1]}),
        "append": lambda: http("POST", kv + "/append", {"value": value}),
        "txn": lambda: http("POST", "/txn", {"ops": value}),
    }[f]()
    if code == 200:
        return {"type": "ok", "value": body.get("ops" if f == "txn" else "value")}
    # definite: it did not happen (no leader, cas-mismatch); otherwise it may have.
    return {"type": "fail" if body.get("definite") is True else "info",
            "error": body.get("error") or "http %d" % code}

for line in sys.stdin:
    req = json.loads(line)
    try:
        ans = answer(req["f"], req["key"], req["value"])
    except urllib.error.URLError as e:  # refused: nothing was sent; anything else may have been
        ans = {"type": "fail" if isinstance(e.reason, ConnectionRefusedError) else "info",
               "error": str(e.reason)}
    except Exception as e:  # a timeout, a reset, a garbled body: it may have happened
        ans = {"type": "info", "error": repr(e)}
    print(json.dumps({"id": req["id"], **ans}), flush=True)
