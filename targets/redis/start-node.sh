#!/bin/sh
# start-node NAME IP IPS DATA_DIR
#
# Starts one node of the Redis + Sentinel target: a Sentinel in the background and redis-server
# in the foreground (the container lives exactly as long as redis-server). Copied into the image
# as /usr/local/bin/start-node; see targets/redis.toml and targets/redis/README.md.
#
#   NAME      this node's name (n1, n2, ...), only for the log
#   IP        this node's address: what it announces to the other nodes
#   IPS       every node's address, comma-joined, in node order; the first is the initial primary
#   DATA_DIR  where the configuration files and the data live (kept across restarts)
#
# First start (no sentinel.conf yet): the first address of IPS is the primary, every other node
# starts as its replica, and each Sentinel is told to monitor that primary.
#
# Restart (sentinel.conf exists): Sentinel rewrites its own file whenever it learns of a failover,
# so the file is kept as it is, and this node follows the primary named in it: a replica of that
# address, or a primary if the file names this node. A node that was cut off while it was the
# primary has not heard of the failover and comes back as a primary; the other Sentinels demote it
# when they see it, and writes it accepts meanwhile are lost. That is Redis's documented behaviour
# (see the README), not something this script tries to hide.
set -eu

if [ "$#" -ne 4 ]; then
    echo "usage: start-node NAME IP IPS DATA_DIR" >&2
    exit 2
fi
name=$1
ip=$2
ips=$3
dir=$4

# Fixed by the target file's ports; every node uses the same two.
redis_port=6379
sentinel_port=26379
master_name=mymaster
# Two Sentinels must agree that the primary is down; a failover also needs a majority (2 of 3).
quorum=2
# A primary that answers no PING for 2 s is down for that Sentinel. Lower values make a slow
# primary (an fsync stall, a short pause) look dead; higher ones lengthen every failover.
down_after_ms=2000
# Failover timeout: after a failed failover attempt, Sentinels wait twice this (12 s) before the
# next one, and a promotion stuck for this long is abandoned. Redis's default is 3 minutes, which
# would leave a cluster without a primary for minutes after a split vote.
failover_timeout_ms=6000

mkdir -p "$dir"
redis_conf=$dir/redis.conf
sentinel_conf=$dir/sentinel.conf

# The primary that Sentinel's own file names ("sentinel monitor mymaster IP PORT QUORUM").
known_master() {
    awk -v m="$master_name" '$1 == "sentinel" && $2 == "monitor" && $3 == m { print $4; exit }' \
        "$sentinel_conf" 2>/dev/null || true
}

master=$(known_master)
if [ -n "$master" ]; then
    echo "start-node $name: restart; Sentinel's file names $master as the primary" >&2
else
    master=${ips%%,*}
    echo "start-node $name: first start; initial primary $master" >&2
    # Sentinel rewrites this file (known replicas and Sentinels, epochs, failovers): it must stay
    # writable, and a restart keeps it.
    cat >"$sentinel_conf" <<EOF
port $sentinel_port
bind 0.0.0.0
protected-mode no
daemonize no
logfile ""
dir $dir
sentinel announce-ip $ip
sentinel announce-port $sentinel_port
sentinel monitor $master_name $master $redis_port $quorum
sentinel down-after-milliseconds $master_name $down_after_ms
sentinel failover-timeout $master_name $failover_timeout_ms
sentinel parallel-syncs $master_name 1
EOF
fi

if [ "$master" = "$ip" ]; then
    replicaof=""
else
    replicaof="replicaof $master $redis_port"
fi

# redis.conf is written at every start; the only state Redis itself would keep in it is the
# replicaof line (Sentinel sends CONFIG REWRITE when it reconfigures a node), and that line is
# taken from Sentinel's file above.
cat >"$redis_conf" <<EOF
port $redis_port
bind 0.0.0.0
protected-mode no
daemonize no
logfile ""
dir $dir
# Persistence: the append-only file only, fsynced once a second (Redis's default and suggested
# policy for it). A killed process normally loses nothing (the kernel still holds the writes); a
# power failure can lose about the last second of acknowledged writes on that node. No RDB snapshots ("save" empty);
# a replica's full resynchronisation still writes dump.rdb.
appendonly yes
appenddirname "appendonlydir"
appendfsync everysec
save ""
# The address the primary and Sentinel list for this replica.
replica-announce-ip $ip
# A replica that needs a full copy (every restarted replica: Redis cannot resume replication from
# an append-only file) gets it at once; Redis waits 5 s by default to serve several replicas with
# one transfer, which only slows a small test cluster down.
repl-diskless-sync-delay 0
# Off, as Redis ships it. "min-replicas-to-write 1" with "min-replicas-max-lag 10" makes a
# primary that lost its replicas refuse writes after about 10 s: it narrows the window in which
# a cut-off primary accepts writes that will be lost, but does not close it.
# min-replicas-to-write 1
# min-replicas-max-lag 10
$replicaof
EOF

redis-sentinel "$sentinel_conf" &
exec redis-server "$redis_conf"
