#!/bin/sh
# Try the Redis target without Docker: three network namespaces stand in for the containers.
# Needs root, iproute2, iptables and Debian's redis-server and redis-sentinel on this machine.
#
#   local-cluster.sh up [DIR]      namespaces rt-n1..rt-n3 (10.77.0.11-13) on a bridge in rt-sw
#                                  (10.77.0.1, where the client runs), then start-node in each
#   local-cluster.sh start N       start node N again (a restart: its DIR/nN is kept)
#   local-cluster.sh kill N        SIGKILL node N's redis-server and Sentinel (a container kill)
#   local-cluster.sh pause N       SIGSTOP node N's processes (docker pause); resume N: SIGCONT
#   local-cluster.sh isolate N     drop node N's traffic to and from the other nodes (not from
#                                  10.77.0.1: the client still reaches everyone, as in Faultline)
#   local-cluster.sh heal          remove every drop rule
#   local-cluster.sh sh CMD...     run CMD where the client runs (the rt-sw namespace)
#   local-cluster.sh down          stop everything and remove the namespaces (DIR stays)
#
# Partitions are the harness's: iptables rules in each node's INPUT chain dropping packets by
# source address.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
state=/tmp/redis-local-cluster
nodes="1 2 3"
ips=10.77.0.11,10.77.0.12,10.77.0.13

addr() { echo "10.77.0.1$1"; }
in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

start() {
    n=$1
    dir=$(cat "$state/dir")
    mkdir -p "$dir"
    in_ns "rt-n$n" setsid "$here/start-node.sh" "n$n" "$(addr "$n")" "$ips" "$dir/n$n" \
        >>"$dir/n$n.log" 2>&1 </dev/null &
}

pids() { ip netns pids "rt-n$1"; }

case "${1:-}" in
up)
    dir=${2:-$state/data}
    mkdir -p "$state"
    echo "$dir" >"$state/dir"
    ip netns add rt-sw
    in_ns rt-sw ip link set lo up
    in_ns rt-sw ip link add br0 type bridge
    in_ns rt-sw ip addr add 10.77.0.1/24 dev br0
    in_ns rt-sw ip link set br0 up
    for n in $nodes; do
        ip netns add "rt-n$n"
        in_ns rt-sw ip link add "veth$n" type veth peer name eth0 netns "rt-n$n"
        in_ns rt-sw ip link set "veth$n" master br0 up
        in_ns "rt-n$n" ip link set lo up
        in_ns "rt-n$n" ip addr add "$(addr "$n")/24" dev eth0
        in_ns "rt-n$n" ip link set eth0 up
    done
    for n in $nodes; do start "$n"; done
    echo "data and logs in $dir"
    ;;
start) start "$2" ;;
kill) kill -KILL $(pids "$2") ;;
pause) kill -STOP $(pids "$2") ;;
resume) kill -CONT $(pids "$2") ;;
isolate)
    for n in $nodes; do
        [ "$n" = "$2" ] && continue
        in_ns "rt-n$2" iptables -A INPUT -s "$(addr "$n")" -j DROP
        in_ns "rt-n$n" iptables -A INPUT -s "$(addr "$2")" -j DROP
    done
    ;;
heal) for n in $nodes; do in_ns "rt-n$n" iptables -F INPUT; done ;;
sh) shift; in_ns rt-sw "$@" ;;
down)
    for n in $nodes; do
        p=$(pids "$n" 2>/dev/null || true)
        [ -n "$p" ] && kill -KILL $p || true
        ip netns del "rt-n$n" 2>/dev/null || true
    done
    ip netns del rt-sw 2>/dev/null || true
    ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
