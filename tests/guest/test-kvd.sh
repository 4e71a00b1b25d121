#!/bin/bash
# Protocol test of kvd, run on the host (kvd is a static binary) on
# 127.0.0.1, driven by kvctl.  Needs no QEMU, so it is cheap enough for
# every check run.
#
#   test-kvd.sh           environment: KVD, KVCTL, SRCDIR
set -u

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KVD=${KVD:-$SRCDIR/build/guest/bin/kvd}
KVCTL=${KVCTL:-$SRCDIR/build/tools/kvctl}
work=$(mktemp -d /tmp/plover-kvd-test.XXXXXX)
kvd_pid=
passed=0
failed=0

trap '[ -n "$kvd_pid" ] && kill "$kvd_pid" 2>/dev/null; rm -rf "$work"' EXIT

# Start kvd on a free loopback port (bounded tries), sets port.
for _ in $(seq 1 20); do
    port=$((20000 + RANDOM % 20000))
    "$KVD" -a 127.0.0.1 -p "$port" -c 64 -r "$work/ready" 2> "$work/kvd.err" &
    kvd_pid=$!
    for _ in $(seq 1 50); do
        [ -e "$work/ready" ] && break
        kill -0 "$kvd_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -e "$work/ready" ] && break
    kill "$kvd_pid" 2>/dev/null
    wait "$kvd_pid" 2>/dev/null
    kvd_pid=
done
[ -n "$kvd_pid" ] || { echo "test-kvd: cannot start kvd" >&2; exit 1; }

# expect WANT CMD...: one request, exact reply.
expect() {
    local want=$1 got
    shift
    got=$("$KVCTL" --timeout 5 127.0.0.1 "$port" "$@" 2>&1)
    if [ "$got" = "$want" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $* -> \"$got\", expected \"$want\""
    fi
}

expect PONG PING
expect NOTFOUND GET a
expect OK SET a hello world
expect "VALUE hello world" GET a
expect OK SET a again
expect "VALUE again" GET a
expect OK DEL a
expect NOTFOUND DEL a
expect NOTFOUND GET a
expect "VALUE 1" INCR n
expect "VALUE 2" INCR n
expect OK SET n -5
expect "VALUE -4" INCR n
expect OK SET s text
expect "ERR value is not an integer" INCR s
expect OK SET big 9223372036854775807
expect "ERR integer overflow" INCR big
expect "ERR unknown command" FROB a
expect "ERR missing key" GET
expect "ERR missing value" SET k
expect "ERR too many arguments" GET a b
expect "ERR too many arguments" PING x
expect "ERR key too long" GET "$(printf 'k%.0s' $(seq 1 251))"
expect OK SET k "$(printf 'v%.0s' $(seq 1 1024))"
expect "ERR value too long" SET k "$(printf 'v%.0s' $(seq 1 1025))"
expect "PONG" PING

# Pipelined requests, a line split across writes, an overlong line, CRLF:
# all on one connection, which must stay usable after the error.
exec 3<>"/dev/tcp/127.0.0.1/$port"
{
    printf 'SET p 1\nGET p\nINC'
    sleep 0.1
    printf 'R p\r\n'
    head -c 5000 /dev/zero | tr '\0' x
    printf '\nPING\n'
} >&3
want=$'OK\nVALUE 1\nVALUE 2\nERR line too long\nPONG'
got=$(for _ in 1 2 3 4 5; do IFS= read -r -t 5 line <&3 && echo "$line"; done)
exec 3>&-
if [ "$got" = "$want" ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL: pipelined session: $(echo "$got" | tr '\n' '|')"
fi

# Concurrent checking load: any wrong answer fails.
if "$KVCTL" load 127.0.0.1 "$port" --clients 8 --seconds 2 --keys 200 \
        --write-ratio 0.5 --timeout 5 > "$work/load.out" 2>&1; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL: load"
    cat "$work/load.out"
fi

stats=$("$KVCTL" 127.0.0.1 "$port" STATS)
case $stats in
    "STATS keys="*" errors="*) passed=$((passed + 1)) ;;
    *) failed=$((failed + 1)); echo "FAIL: STATS -> $stats" ;;
esac

echo "test-kvd: $passed passed, $failed failed"
[ "$failed" = 0 ]
