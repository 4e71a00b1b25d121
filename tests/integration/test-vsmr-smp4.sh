#!/usr/bin/env bash
# test-vsmr's checks on a 4-vCPU guest (MTTCG): concurrent kvd answers
# checked, racey running, RAM digests of leader and secondary equal at
# every recorded syncvm.
GUEST_SMP=4 exec "$(dirname "$0")/test-vsmr.sh"
