#!/usr/bin/env python3
"""A Faultline exec client for raftkv's HTTP API (docs/exec-protocol.md): exec-client.py HOST:PORT

Standard library only. It keeps one HTTP/1.1 connection to its node and speaks just enough HTTP
(raftkv always answers with a content-length), which costs half the CPU of http.client."""
import json, socket, sys, urllib.parse

HOST, PORT = sys.argv[1].rsplit(":", 1)
TIMEOUT = 1.5  # under the workload's op-timeout (2 s by default): answer info before being killed
conn, buf = None, b""  # the connection, opened again after any error, and what it sent unread

def recv_until(done):
    global buf
    while not done():
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        buf += chunk

def call(method, path, body=None):
    global conn, buf
    if conn is None:
        conn, buf = socket.create_connection((HOST, int(PORT)), timeout=TIMEOUT), b""
    data = b"" if body is None else json.dumps(body).encode()
    conn.sendall(b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (method, path.encode(), HOST.encode(), len(data), data))
    recv_until(lambda: b"\r\n\r\n" in buf)
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = next(int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length:"))
    buf = rest
    recv_until(lambda: len(buf) >= length)
    answer, buf = buf[:length], buf[length:]
    return int(lines[0].split()[1]), json.loads(answer or b"null")  # errors: {"error", "definite"}

def answer(f, key, value):
    kv = "/kv/" + urllib.parse.quote(key, safe="")
    code, body = {
        "read": lambda: call(b"GET", kv),
        "write": lambda: call(b"PUT", kv, {"value": value}),
        "cas": lambda: call(b"POST", kv + "/cas", {"from": value[0], "to": value[1]}),
        "append": lambda: call(b"POST", kv + "/append", {"value": value}),
        "txn": lambda: call(b"POST", "/txn", {"ops": value}),
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
    except Exception as e:  # a timeout, a reset, a garbled answer: it may have happened
        conn, ans = None, {"type": "info", "error": repr(e)}
    print(json.dumps({"id": req["id"], **ans}), flush=True)
