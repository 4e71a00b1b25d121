/*
 * Run controls: what the monitor's cont, stop and system_powerdown, and
 * the guest's own power-off, mean for a replica.
 *
 * Consensus decides where the replicated guest runs (the executor's
 * START_VM, STOP_VM, RESUME). A management layer such as libvirt does not
 * know that: it starts every QEMU with -S and sends cont, it sends stop
 * for a suspend and system_powerdown for a shutdown, to whichever domain
 * the operator names. So:
 *
 *  - the VM runs when the executor wants it to and the operator has not
 *    held it: -S or stop holds it, cont releases the hold. A cont never
 *    starts the VM of a replica that does not execute it (a witness, a
 *    secondary with no copy yet); it answers success, since to the
 *    operator the protected VM is running;
 *  - stop is taken by the leader: its VM, the one whose outputs leave,
 *    pauses, and the service with it. A stop on another replica is
 *    refused: pausing a secondary's copy protects nothing and would only
 *    leave a paused VM to take over;
 *  - system_powerdown presses the leader's power button; another replica
 *    refuses it, naming the leader;
 *  - the guest's power-off on the leader ends the group: the leader stops
 *    its VM, proposes a syncvm (the secondary gets the final state, the
 *    outputs said before it leave) and then the end (PLV_OP_END). Every
 *    replica that applies the end shuts down, as the guest asked, so each
 *    management layer sees its domain shut off. A secondary's copy that
 *    powers off alone only stops: the leader's state replaces it at the
 *    next syncvm.
 *
 * A signal or a quit still ends only the replica it is sent to.
 *
 * The hooks are installed by plover_init, and only when -plover is given.
 *
 * The stops and starts a syncvm makes send no STOP or RESUME event: to
 * the management layer the replicated VM runs on (libvirt would show the
 * domain paused and running again many times a second). It sees a
 * replica's VM stop when that replica stops holding a running copy (a
 * witness, a discarded VM, a suspend) and start when it holds one.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "system/runstate.h"
#include "qapi/qapi-events-run-state.h"
#include "plover-state.h"
#include "trace.h"

/*
 * Stops the VM, and tells the management layer so even if a syncvm had
 * already stopped it without a word.
 */
static void plover_vm_stop_told(PloverState *s)
{
    if (runstate_is_running()) {
        vm_stop(RUN_STATE_PAUSED);
    } else if (!s->run.syncvm_stop && s->run.told_running) {
        s->run.told_running = false;
        qapi_event_send_stop();
    }
}

/* The VM runs when the executor wants it and nothing holds it. */
static void plover_run_if_allowed(PloverState *s)
{
    if (s->run.vm_wanted && !s->run.hold && !s->run.powered_off &&
        !runstate_is_running()) {
        vm_start();
    }
}

/* Refuses a run control meant for the leader, naming it. */
static bool plover_runctl_refuse(PloverState *s, const char *what,
                                 const char *how, Error **errp)
{
    const PlvExec *x = &s->exec;
    const char *role = PloverRole_str(plover_qapi_role(x->role));

    s->run.refused++;
    if (x->leader != PLV_NODE_NONE) {
        error_setg(errp, "plover: %s refused: replica %u is the %s; %s "
                   "through the leader, replica %u", what, s->cfg.id, role,
                   how, x->leader);
    } else {
        error_setg(errp, "plover: %s refused: replica %u is the %s and no "
                   "leader is known; %s through the leader", what,
                   s->cfg.id, role, how);
    }
    return true;
}

static bool plover_leads_the_vm(PloverState *s)
{
    return s->exec.role == PLV_ROLE_LEADER && s->exec.executing;
}

static bool plover_runctl_cont(Error **errp)
{
    PloverState *s = plover_state();

    s->run.hold = false;
    trace_plover_run_control("cont", s->run.vm_wanted);
    plover_run_if_allowed(s);
    return true;
}

static bool plover_runctl_stop(Error **errp)
{
    PloverState *s = plover_state();

    if (!plover_leads_the_vm(s)) {
        return plover_runctl_refuse(s, "stop", "suspend the VM", errp);
    }
    s->run.hold = true;
    trace_plover_run_control("stop", s->run.vm_wanted);
    plover_vm_stop_told(s);
    return true;
}

static bool plover_runctl_powerdown(Error **errp)
{
    PloverState *s = plover_state();

    if (!plover_leads_the_vm(s)) {
        return plover_runctl_refuse(s, "system_powerdown",
                                    "shut the VM down", errp);
    }
    trace_plover_run_control("system_powerdown", s->run.vm_wanted);
    return false;               /* the leader's guest gets the button */
}

static bool plover_runctl_shutdown(ShutdownCause cause)
{
    PloverState *s = plover_state();

    if (s->run.ending || cause != SHUTDOWN_CAUSE_GUEST_SHUTDOWN ||
        !s->exec.executing) {
        return false;
    }
    if (runstate_is_running()) {
        vm_stop(RUN_STATE_PAUSED);
    }
    if (s->exec.role != PLV_ROLE_LEADER) {
        /* This copy alone: the leader's state replaces it at the next
         * syncvm, and that one runs again. */
        trace_plover_run_control("secondary-power-off", s->run.vm_wanted);
        return true;
    }
    if (!s->run.powered_off) {
        s->run.powered_off = true;
        info_report("plover: the guest powered off; replica %u ends the "
                    "group after a last syncvm", s->cfg.id);
        trace_plover_run_control("power-off", s->run.vm_wanted);
        plover_request_syncvm(s, "power-off");
        if (plv_driver_propose_end(s->driver) < 0) {
            warn_report("plover: replica %u could not propose the group's "
                        "end: it no longer leads", s->cfg.id);
        }
    }
    return true;
}

static bool plover_runctl_quiet_event(bool running)
{
    PloverState *s = plover_state();

    if (!running) {
        if (s->run.syncvm_stop) {
            return true;
        }
        s->run.told_running = false;
        return false;
    }
    if (s->run.told_running) {
        return true;            /* the end of a syncvm's stop */
    }
    s->run.told_running = true;
    return false;
}

static const RunControlHooks plover_run_control_hooks = {
    .cont = plover_runctl_cont,
    .stop = plover_runctl_stop,
    .powerdown = plover_runctl_powerdown,
    .shutdown = plover_runctl_shutdown,
    .quiet_event = plover_runctl_quiet_event,
};

/* plover_init, before it forces autostart off: -S holds the VM. */
void plover_runctl_setup(PloverState *s, bool autostart_given)
{
    s->run.hold = !autostart_given;
    runstate_set_control_hooks(&plover_run_control_hooks);
}

/* The executor wants the VM to run (START_VM, RESUME). */
void plover_start_vm(PloverState *s)
{
    s->run.vm_wanted = true;
    plover_run_if_allowed(s);
}

/* ... or stopped (STOP_VM, DISCARD). */
void plover_stop_vm(void)
{
    PloverState *s = plover_state();

    s->run.vm_wanted = false;
    plover_vm_stop_told(s);
}

/* ... or stopped for a syncvm, which RESUME ends: no STOP event. */
void plover_stop_vm_for_syncvm(void)
{
    PloverState *s = plover_state();

    s->run.syncvm_stop = true;
    plover_stop_vm();
    s->run.syncvm_stop = false;
}

/*
 * The group's end is committed (PLV_EXEC_END): this replica ends too.
 * Its state file goes with the group: the incarnation in it says "I
 * restarted, learn from the others first", and if all three replicas
 * started again that way none would ever boot the VM. Started again, it
 * begins a new group. A replica that was down at the end keeps its file
 * and joins the new group as a restarted one.
 */
void plover_runctl_end(PloverState *s)
{
    s->run.ending = true;
    if (unlink(s->cfg.state) < 0 && errno != ENOENT) {
        warn_report("plover: cannot remove the state file %s of the group "
                    "that ended: %s", s->cfg.state, strerror(errno));
    }
    info_report("plover: the group ended (the guest powered off); "
                "replica %u shuts down", s->cfg.id);
    qemu_system_shutdown_request(SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
}
