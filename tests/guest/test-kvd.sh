#!/bin/bash
# Protocol test of kvd, run on the host (kvd is a static binary) on
# 127.0.0.1, driven by kvctl.  Needs no QEMU, so it is cheap enough for
# every check run.  The durable mode (-d) is tested at the end: kill -9 and
# replay, damaged log tails, RESTART.
#
#   test-kvd.sh           environment: KVD, KVCTL, SRCDIR
set -u

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KVD=${KVD:-$SRCDIR/build/guest/bin/kvd}
KVCTL=${KVCTL:-$SRCDIR/build/tools/kvctl}
work=$(mktemp -d /tmp/plover-kvd-test.XXXXXX)
kvd_pid=
sup_pid=
passed=0
failed=0

trap '[ -n "$kvd_pid" ] && kill "$kvd_pid" 2>/dev/null
      [ -n "$sup_pid" ] && kill "$sup_pid" "$(cat "$work/sup-kvd.pid")" 2>/dev/null
      rm -rf "$work"' EXIT

# start_kvd PORT [KVD ARGS...]: starts kvd on PORT (0: a free one, bounded
# tries), sets port and kvd_pid; its stderr goes to $work/kvd.err.  False
# if it did not listen.
start_kvd() {
    local want=$1 try
    shift
    for try in $(seq 1 20); do
        port=$want
        [ "$port" = 0 ] && port=$((20000 + RANDOM % 20000))
        rm -f "$work/ready"
        "$KVD" -a 127.0.0.1 -p "$port" -c 64 -r "$work/ready" "$@" 2>> "$work/kvd.err" &
        kvd_pid=$!
        for _ in $(seq 1 100); do
            [ -e "$work/ready" ] && return 0
            kill -0 "$kvd_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$kvd_pid" 2>/dev/null
        wait "$kvd_pid" 2>/dev/null
        kvd_pid=
        [ "$want" = 0 ] || return 1
    done
    return 1
}

# Ends kvd at once: no chance to tidy anything up.
kill9_kvd() {
    kill -9 "$kvd_pid" 2>/dev/null
    wait "$kvd_pid" 2>/dev/null
    kvd_pid=
}

start_kvd 0 || { echo "test-kvd: cannot start kvd" >&2; exit 1; }

# check NAME COMMAND...: passes if the command succeeds.
check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $name"
    fi
}

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

# ---- durable mode ----

expect "ERR not in durable mode" RESTART
check "kvctl restart refused without -d" \
    test "$("$KVCTL" restart 127.0.0.1 "$port" --timeout 5 2>&1; echo "rc=$?")" = \
    $'kvctl: RESTART answered "ERR not in durable mode"\nrc=1'
kill "$kvd_pid"
wait "$kvd_pid" 2>/dev/null
kvd_pid=

log=$work/kvd.log
# -k: RESTART must not drop this machine's whole page cache.
durable() { start_kvd "$1" -d "$log" -k; }
# replayed N: the last start's replay line says N records.
replayed() {
    grep "^kvd: log $log: replayed" "$work/kvd.err" | tail -n 1 |
        grep -q "replayed $1 records"
}
# damaged N: the last start cut a damaged tail of N bytes (0: none).
damaged() {
    local last
    last=$(grep -n "^kvd: log $log: replayed" "$work/kvd.err" | tail -n 1 | cut -d: -f1)
    if [ "$1" = 0 ]; then
        ! tail -n "+$last" "$work/kvd.err" | grep -q "damaged tail"
    else
        tail -n "+$last" "$work/kvd.err" | grep -q "ignored a damaged tail of $1 bytes"
    fi
}

check "durable start" durable 0
expect OK SET a 1
expect OK SET b two words
expect "VALUE 1" INCR n
expect "VALUE 2" INCR n
expect OK DEL a
expect NOTFOUND DEL a
expect OK SET c x
expect "ERR value is not an integer" INCR c
check "STATS in durable mode" \
    test "$("$KVCTL" 127.0.0.1 "$port" STATS | grep -o ' logged=.*')" = \
    " logged=6 syncs=6 replayed=0"
# Every acknowledged write survives kill -9.
kill9_kvd
check "restart after kill -9" durable "$port"
check "replayed 6 records" replayed 6
check "no damaged tail" damaged 0
expect NOTFOUND GET a
expect "VALUE two words" GET b
expect "VALUE 2" GET n
expect "VALUE x" GET c
expect "VALUE 3" INCR n

# A torn last record (the write a crash cut short) is ignored and cut off,
# so that records appended afterwards are found.
kill9_kvd
size=$(stat -c %s "$log")
truncate -s $((size - 3)) "$log"
check "start on a torn tail" durable "$port"
check "torn: 6 records" replayed 6
check "torn: tail ignored" damaged $((size - 3 - $(stat -c %s "$log")))
expect "VALUE 2" GET n
expect OK SET d after-torn
kill9_kvd
check "start after the cut" durable "$port"
check "cut: 7 records" replayed 7
check "cut: no damaged tail" damaged 0
expect "VALUE after-torn" GET d

# A damaged last record (one byte flipped) fails its check; so does
# garbage after the last record.
kill9_kvd
size=$(stat -c %s "$log")
printf 'X' | dd of="$log" bs=1 seek=$((size - 2)) conv=notrunc status=none
check "start on a damaged record" durable "$port"
check "damaged: 6 records" replayed 6
expect NOTFOUND GET d
expect OK SET e 5
kill9_kvd
head -c 100 /dev/urandom >> "$log"
check "start with garbage after the log" durable "$port"
check "garbage: 7 records" replayed 7
check "garbage: ignored" damaged 100
expect "VALUE 5" GET e

# Pipelined writes share a sync and are answered in order.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'SET p 1\nINCR p\nDEL p\nGET p\n' >&3
got=$(for _ in 1 2 3 4; do IFS= read -r -t 5 line <&3 && echo "$line"; done)
exec 3>&-
check "pipelined durable writes" test "$got" = $'OK\nVALUE 2\nOK\nNOTFOUND'

# Concurrent writers, kill -9 in the middle, kvd back on the same log: no
# acknowledged write may be missing.  Writers share fdatasyncs.
"$KVCTL" load 127.0.0.1 "$port" --clients 8 --seconds 3 --keys 400 \
    --write-ratio 0.8 --timeout 5 --reconnect --verify --verify-timeout 30 \
    > "$work/dload.out" 2>&1 &
load_pid=$!
sleep 1
stats=$("$KVCTL" 127.0.0.1 "$port" STATS)
kill9_kvd
sleep 0.3
check "restart during the load" durable "$port"
if wait "$load_pid" && grep -q "lost=0 wrong=0" "$work/dload.out"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL: durable load with kill -9"
    cat "$work/dload.out"
fi
logged=$(echo "$stats" | sed -n 's/.* logged=\([0-9]*\) syncs=\([0-9]*\).*/\1/p')
syncs=$(echo "$stats" | sed -n 's/.* logged=\([0-9]*\) syncs=\([0-9]*\).*/\2/p')
echo "test-kvd: durable load: $logged records logged with $syncs fdatasyncs in 1 s"
check "group commit (fewer syncs than records)" test "${syncs:-0}" -lt "${logged:-0}"

# A file that is not a kvd log is refused and left alone.
kill9_kvd
echo "not a log" > "$work/other"
check "foreign file refused" \
    bash -c "! '$KVD' -a 127.0.0.1 -p $port -d '$work/other' 2>/dev/null"
check "foreign file untouched" test "$(cat "$work/other")" = "not a log"

# RESTART: OK, the log on disk, exit 0; a supervisor (here a bounded
# loop) starts kvd again, which replays the log.
(
    for _ in 1 2 3; do
        "$KVD" -a 127.0.0.1 -p "$port" -r "$work/ready" -d "$log" -k 2>> "$work/kvd.err" &
        echo $! > "$work/sup-kvd.pid"
        wait $! || break
    done
) &
sup_pid=$!
check "supervised kvd serves" "$KVCTL" wait 127.0.0.1 "$port" --timeout 10 > /dev/null
expect OK SET r before-restart
check "kvctl restart" "$KVCTL" restart 127.0.0.1 "$port" --timeout 20 > /dev/null
check "RESTART logged" grep -q "^kvd: RESTART: log on disk" "$work/kvd.err"
expect "VALUE before-restart" GET r
expect "VALUE 5" GET e
expect "ERR too many arguments" RESTART now
# The last round: RESTART ends the loop.
"$KVCTL" restart 127.0.0.1 "$port" --timeout 20 > /dev/null
expect OK RESTART
wait "$sup_pid"
check "supervisor loop ended" test $? = 0
sup_pid=

echo "test-kvd: $passed passed, $failed failed"
[ "$failed" = 0 ]
