#!/bin/sh
# node-ready IPS
#
# The readiness probe of the Redis + Sentinel target, run by the harness inside a node's container
# (targets/redis.toml, [ready]): exits 0 once this node's redis-server answers and its Sentinel
# knows the whole cluster, every other node as a replica and every other Sentinel. Redis accepts
# connections ~10 s before that (Sentinels learn replicas from the primary's INFO every 10 s), and
# a failover before it may find no replica to promote.
set -eu
n=$(printf '%s\n' "$1" | tr ',' '\n' | grep -c .)
[ "$(redis-cli -p 6379 ping)" = PONG ] || exit 1
out=$(redis-cli -p 26379 sentinel master mymaster) || exit 1
# SENTINEL MASTER answers field names and values on alternate lines.
field() { printf '%s\n' "$out" | awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }
[ "$(field num-slaves)" = "$((n - 1))" ] && [ "$(field num-other-sentinels)" = "$((n - 1))" ]
