#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for `scir run --executor slurm` and its tests.
#
#   scripts/slurm-local.sh          install (Debian slurm-wlm + munge) if missing, configure,
#                                   start munged, slurmctld and slurmd; wait until the node
#                                   is idle. Does nothing when `sinfo` already answers.
#   scripts/slurm-local.sh stop     stop the three daemons.
#
# Needs root (apt-get, /etc/slurm). The node gets this machine's CPUs and ~85 % of its
# memory; one partition `main`, no accounting (scir reads a job's end from its own result
# file, and from `scontrol show job` when the job left none). `proctrack/linuxproc` and
# `task/none` avoid needing cgroups, so it runs inside containers.
set -euo pipefail

STATE=/var/spool/slurmctld
LOGS=/var/log/slurm

stop() {
    for d in slurmd slurmctld munged; do
        pkill -x "$d" 2>/dev/null || true
    done
}

node_ready() {
    # One line per node state: "idle", "mix", "alloc" are up; "down", "drain", "unk" are not.
    local states
    states=$(sinfo -h -o '%t' 2>/dev/null) || return 1
    grep -Eq '^(idle|mix|alloc|comp)' <<<"$states"
}

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    echo "slurm-local: installing slurm-wlm and munge (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

configure() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.85 }' /proc/meminfo)
    mkdir -p /etc/slurm "$STATE" /var/spool/slurmd "$LOGS" /run/munge
    cat >/etc/slurm/slurm.conf <<EOF
# Written by scir's scripts/slurm-local.sh: a one-node cluster for local runs and tests.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# Start a job within ~0.1 s of a submission or a finished job (the defaults wait 2-3 s,
# which dominates a pipeline of many short tasks).
SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$STATE
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Keep finished jobs visible to scontrol for 10 minutes.
MinJobAge=600
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
    fi
}

start() {
    if node_ready; then
        return
    fi
    install
    configure
    stop
    chown munge:munge /run/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c /usr/sbin/munged
    else
        /usr/sbin/munged --force
    fi
    slurmctld
    slurmd
    for _ in $(seq 1 60); do
        if node_ready; then
            sinfo >&2
            return
        fi
        # A node that registered while the controller thought it down comes back with this.
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm-local: the node did not become idle; see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
    sinfo >&2 || true
    exit 1
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
