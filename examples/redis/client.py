#!/usr/bin/env python3
"""A Faultline exec client for Redis with Sentinel (targets/redis.toml).

    python3 examples/redis/client.py IP1,IP2,IP3

Reads one JSON request per line on stdin and answers each with one JSON line on stdout (the exec
protocol: see the target file). Python's standard library only: it speaks RESP, Redis's wire
protocol, over a plain socket.

Finding the primary follows Redis's "Sentinel client spec":
  1. ask the Sentinels (port 26379) in list order, with short timeouts; the first one that
     answers moves to the front of the list, so it is asked first next time;
  2. SENTINEL get-master-addr-by-name mymaster (a null answer: try the next Sentinel);
  3. connect to that address (port 6379) and check with ROLE that it really is a primary; if it
     is not, that Sentinel goes to the back of the list (the spec would ask it first again).
After any error the connection is dropped and the next operation starts again from step 1.

How an outcome is decided (Faultline's rule: `fail` only when the operation certainly did not
happen, `info` when it may have):
  - nothing sent yet (no Sentinel answers, connect refused or timed out, ROLE says replica):
    fail; a connection the server closed while idle is replaced first, without a fail;
  - an error reply (READONLY from a replica, NOREPLICAS, LOADING, ...): Redis did not run the
    command (the cas script writes only as its last step): fail;
  - a timeout or a broken connection after the command was sent: a write or cas is info, a read
    is fail (a read changes nothing);
  - cas whose current value is not `from`: fail with error "cas-mismatch".
Values are stored as JSON text, so integers come back as JSON integers. append and txn are not
implemented: fail with error "unsupported".
"""

import json
import os
import select
import socket
import sys
import time

SENTINEL_PORT = 26379  # the primary's port comes from the Sentinel's answer
MASTER_NAME = "mymaster"

# Seconds. The Sentinel client spec asks for "a few hundreds of milliseconds" per Sentinel.
# Finding and checking the primary gets at most FIND_BUDGET, waiting for the command's reply
# REPLY_TIMEOUT: together below the harness's usual op-timeout (2 s), so that the client answers
# `info` itself instead of being killed for its silence.
SENTINEL_TIMEOUT = 0.2
CONNECT_TIMEOUT = 0.3
FIND_BUDGET = 0.8
REPLY_TIMEOUT = float(os.environ.get("REDIS_CLIENT_REPLY_TIMEOUT", "1.0"))

# Compare-and-set as one Lua script, which Redis runs atomically: SET KEYS[1] to ARGV[2] only when
# its current value equals ARGV[1] (when ARGV[3] is "missing": only when the key does not exist);
# 1 when it set, 0 when not.
CAS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local expected = ARGV[1]
if ARGV[3] == 'missing' then expected = false end
if current == expected then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


def log(*parts):
    print("client:", *parts, file=sys.stderr, flush=True)


class ErrorReply(Exception):
    """Redis answered with an error (-ERR, -READONLY, ...): the command did not run."""


class NotSent(Exception):
    """The command was not sent: it certainly did not happen."""


class Lost(Exception):
    """The command was sent and no answer came back (timeout, closed, reset): it may have happened."""


class Conn:
    """One RESP connection."""

    def __init__(self, host, port, timeout):
        self.addr = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def idle_and_open(self):
        """True when the server has not closed this idle connection (nor sent anything unasked).
        Sentinel makes a reconfigured node close its clients (CLIENT KILL type normal): seeing
        that before sending lets the next command go to the new primary as a clean attempt."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable

    def call(self, timeout, *args):
        """Sends one command and reads its reply (an ErrorReply is returned, not raised). Raises
        Lost when sending failed or the answer did not come in time."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.settimeout(max(timeout, 0.001))
        try:
            self.sock.sendall(b"".join(out))
        except OSError as e:
            # Part of the command may have left; a partial command is never run, but a whole one
            # could have been, so this is not a NotSent.
            raise Lost(f"send to {self.addr}: {e}") from e
        try:
            return self.read_reply()
        except (OSError, ValueError) as e:
            raise Lost(f"reply from {self.addr}: {e or type(e).__name__}") from e

    def read_reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return ErrorReply(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection closed")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")


class Client:
    def __init__(self, ips):
        self.sentinels = list(ips)
        self.conn = None
        self.primary = None

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def discover(self, deadline):
        """Steps 1 and 2: the primary's address according to the first Sentinel that answers."""
        errors = []
        for host in list(self.sentinels):
            timeout = min(SENTINEL_TIMEOUT, deadline - time.monotonic())
            if timeout <= 0:
                break
            try:
                s = Conn(host, SENTINEL_PORT, timeout)
                try:
                    reply = s.call(timeout, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                finally:
                    s.close()
            except (OSError, NotSent, Lost) as e:
                errors.append(f"{host}: {e}")
                continue
            if isinstance(reply, list) and len(reply) == 2:
                self.sentinels.remove(host)
                self.sentinels.insert(0, host)
                return reply[0].decode(), int(reply[1])
            errors.append(f"{host}: {reply!r}")
        raise NotSent("no Sentinel named a primary (" + "; ".join(errors) + ")")

    def connection(self, deadline):
        """A connection to a primary checked with ROLE (step 3), reusing the current one if the
        server has not closed it. Raises NotSent."""
        if self.conn is not None:
            if self.conn.idle_and_open():
                return self.conn
            log(f"{self.conn.addr} closed the connection; asking the Sentinels again")
            self.drop()
        host, port = self.discover(deadline)
        timeout = min(CONNECT_TIMEOUT, deadline - time.monotonic())
        try:
            conn = Conn(host, port, max(timeout, 0.05))
        except OSError as e:
            raise NotSent(f"connect to {host}:{port}: {e}") from e
        try:
            role = conn.call(max(deadline - time.monotonic(), 0.1), "ROLE")
        except Lost as e:
            conn.close()
            raise NotSent(f"ROLE: {e}") from e
        if isinstance(role, ErrorReply):
            conn.close()
            raise NotSent(f"ROLE on {host}:{port}: {role}")
        if not (isinstance(role, list) and role and role[0] == b"master"):
            conn.close()
            what = role[0].decode() if isinstance(role, list) and role else repr(role)
            # That Sentinel is behind: ask it last next time (our addition to the client spec,
            # which would ask it first again).
            behind = self.sentinels.pop(0)
            self.sentinels.append(behind)
            raise NotSent(f"{host}:{port} is a {what}, not a primary (Sentinel {behind} is behind)")
        if (host, port) != self.primary:
            log(f"primary is {host}:{port} (from Sentinel {self.sentinels[0]})")
            self.primary = (host, port)
        self.conn = conn
        return conn

    def handle(self, req):
        f = req.get("f")
        key = req.get("key")
        value = req.get("value")
        if f == "read":
            args = ("GET", key)
        elif f == "write":
            args = ("SET", key, json.dumps(value))
        elif f == "cas":
            old, new = value
            args = ("EVAL", CAS_SCRIPT, 1, key, json.dumps(old), json.dumps(new),
                    "missing" if old is None else "present")
        else:
            return {"type": "fail", "error": "unsupported"}

        try:
            conn = self.connection(time.monotonic() + FIND_BUDGET)
            reply = conn.call(REPLY_TIMEOUT, *args)
        except NotSent as e:
            self.drop()
            log(f"{f}: not sent: {e}")
            return {"type": "fail", "error": str(e)}
        except Lost as e:
            self.drop()
            log(f"{f}: no answer: {e}")
            return {"type": "fail" if f == "read" else "info", "error": str(e)}

        if isinstance(reply, ErrorReply):
            # READONLY: we reached a replica, the primary has moved. Any error reply means the
            # command did not run; start over with the Sentinels.
            self.drop()
            log(f"{f}: error reply: {reply}")
            return {"type": "fail", "error": str(reply)}
        if f == "read":
            return {"type": "ok", "value": decode(reply)}
        if f == "write":
            return {"type": "ok"}
        if reply == 1:
            return {"type": "ok"}
        return {"type": "fail", "error": "cas-mismatch"}


def decode(raw):
    if raw is None:
        return None
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text  # written by someone else: hand it back as a string


def main():
    if len(sys.argv) != 2:
        print("usage: client.py IP1,IP2,...", file=sys.stderr)
        return 2
    client = Client([ip for ip in sys.argv[1].split(",") if ip])
    for line in sys.stdin:
        if not line.strip():
            continue
        req = {}
        try:
            req = json.loads(line)
            answer = client.handle(req)
        except Exception as e:  # a malformed request, or a bug here: say so and go on
            log(f"cannot handle {line.strip()!r}: {type(e).__name__}: {e}")
            client.drop()
            answer = {"type": "info", "error": f"client error: {type(e).__name__}: {e}"}
        answer = {"id": req.get("id") if isinstance(req, dict) else None, **answer}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    client.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
