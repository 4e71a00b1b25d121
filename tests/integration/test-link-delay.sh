#!/usr/bin/env bash
# Slow replica links: every packet a replica host sends on its consensus
# and syncvm links waits 2 ms plus 0..1 ms (a round trip of 4 to 6 ms,
# some 50 times this machine's). Under a checking load the group serves,
# the leader is then killed, the secondary takes over and re-protects the
# VM by a full syncvm through the same slow links, and no acknowledged
# write is lost. (Loss is test-packet-loss's subject: with loss on a link
# this slow TCP's throughput collapses, and a full syncvm of the guest
# takes tens of seconds; see docs/operations.md.)
. "$(dirname "$0")/lib.sh"

command -v iptables-legacy >/dev/null || fail "iptables-legacy not found (the iptables package)"
[ -x "$NETDELAY" ] || fail "$NETDELAY not built (make tools)"

group_up
for n in 0 1 2; do link_delay "$n" 0.5 0.5 0; done
load_start 30
sleep 10
fail_over_leader
load_check
for n in 0 1 2; do
    counts=$(link_delay_end "$n")
    echo "figure: h$n $counts"
    case "$counts" in "delayed "[1-9]*) ;; *) fail "h$n: nothing was delayed ($counts)" ;; esac
done
