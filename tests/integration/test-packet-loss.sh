#!/usr/bin/env bash
# Lossy links: 2% of the TCP segments every replica host sends (consensus
# and syncvm links) and 1% of the client's are dropped at random
# (nftables), under a checking load: every answer stays correct and no
# acknowledged write is lost. (tc netem, for delay, is not available on
# every test kernel; loss is what exercises retransmission and timeouts.)
. "$(dirname "$0")/lib.sh"

command -v nft >/dev/null || fail "nft not found (the nftables package)"
drop_random() {
    local ns=$1 pct=$2
    nsx "$ns" nft add table inet plvloss
    nsx "$ns" nft add chain inet plvloss out '{ type filter hook output priority 0; }'
    nsx "$ns" nft add rule inet plvloss out meta l4proto tcp numgen random mod 100 '<' "$pct" counter drop
}

group_up
for n in 0 1 2; do drop_random "h$n" 2; done
drop_random cl 1
load_start 20
load_check
for n in 0 1 2; do
    echo "figure: h$n dropped $(nsx "h$n" nft list chain inet plvloss out | sed -n 's/.*counter packets \([0-9]*\).*/\1/p') segments"
done
