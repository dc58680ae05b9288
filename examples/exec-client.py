#!/usr/bin/env python3
"""A Faultline exec client for raftkv's HTTP API (docs/exec-protocol.md): exec-client.py HOST:PORT"""
import http.client, json, sys, urllib.parse

HOST = sys.argv[1]
TIMEOUT = 1.5  # under the workload's op-timeout (2 s by default): answer info before being killed
conn = None  # one kept-alive connection to the node, opened again after any error

def call(method, path, body=None):
    global conn
    if conn is None:
        conn = http.client.HTTPConnection(HOST, timeout=TIMEOUT)
    data = None if body is None else json.dumps(body)
    conn.request(method, path, data, {"content-type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")  # raftkv's errors: {"error", "definite"}

def answer(f, key, value):
    kv = "/kv/" + urllib.parse.quote(key, safe="")
    code, body = {
        "read": lambda: call("GET", kv),
        "write": lambda: call("PUT", kv, {"value": value}),
        "cas": lambda: call("POST", kv + "/cas", {"from": value[0], "to": value[1]}),
        "append": lambda: call("POST", kv + "/append", {"value": value}),
        "txn": lambda: call("POST", "/txn", {"ops": value}),
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
    except ConnectionRefusedError as e:  # refused: nothing was sent
        conn, ans = None, {"type": "fail", "error": str(e)}
    except Exception as e:  # a timeout, a reset, a garbled body: it may have happened
        conn, ans = None, {"type": "info", "error": repr(e)}
    print(json.dumps({"id": req["id"], **ans}), flush=True)
