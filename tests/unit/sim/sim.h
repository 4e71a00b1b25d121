/*
 * Deterministic simulation of a plover consensus cluster: N PlvPaxos
 * instances, a seeded network that drops, delays, reorders and duplicates
 * (every message goes through the wire codec), partitions, crashes and
 * restarts with a new incarnation. Invariants are checked after every
 * step; the first violation stops the run and is reported with its seed.
 * With .exec, each node also runs the executor on a model VM, and what
 * clients see is checked too (sim-exec.c).
 */
#ifndef PLOVER_TEST_SIM_H
#define PLOVER_TEST_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "plover/paxos.h"
#include "sim/sim-exec.h"

typedef struct {
    uint64_t seed;
    uint32_t n;
    uint32_t chaos_ticks;       /* ticks with faults */
    uint32_t heal_bound;        /* commits must resume within this after heal */
    FILE *trace;                /* verbose trace, or NULL */
    bool exec;                  /* nodes run PlvExec on a model VM (sim-exec.c) */
    int broken;                 /* SimBroken: a deliberately broken executor */
    bool double_faults;         /* exec: a partition may also come while a
                                 * node is down or the VM unprotected (two
                                 * replicas out: the lone leader) */
} SimParams;

typedef struct {
    bool ok;
    char why[512];
    uint64_t ticks;
    uint64_t commits;           /* highest committed index */
    uint64_t elections;
    uint64_t handoffs;          /* elections started on a leader's handoff */
    uint64_t forwarded;         /* forwarded inputs a leader submitted */
    uint64_t crashes;
    uint64_t durable_restarts;  /* restarts with the consensus state kept */
    uint64_t double_crashes;    /* crashes while another node was down */
    uint64_t snapshots;
    uint64_t witness_leads;     /* leaderships taken by a non-secondary */
    uint64_t heal_latency;      /* ticks from heal to the marker commit */
    /* exec */
    uint64_t released;          /* outputs released to clients */
    uint64_t late_releases;     /* ... by a leader after a newer one released */
    uint64_t syncvms, sync_failures;    /* ends of syncvms, by outcome */
    uint64_t boots;                     /* VMs booted again, never protected */
    uint64_t kept;                      /* lone leaders that kept the VM */
    uint64_t abandoned;                 /* syncvms of deposed leaders given up */
    uint64_t migrations;        /* leadership migrations started */
    uint64_t exec_handoffs;     /* ... completed */
    uint64_t release_latency;   /* ticks from heal to the marker's output */
    bool vm_lost;               /* no replica held the VM at the end */
    char vm_lost_why[160];
} SimResult;

void sim_params_default(SimParams *prm, uint64_t seed);
void sim_run(const SimParams *prm, SimResult *res);

#endif
