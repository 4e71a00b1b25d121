#!/usr/bin/env bash
# kill -9 the leader under a checking load: the secondary (never the
# witness) takes over from its own state and announces the guest's MAC,
# the witness is made secondary, and no acknowledged write is lost.
. "$(dirname "$0")/lib.sh"

group_up
load_start 25
sleep 6
fail_over_leader
load_check
