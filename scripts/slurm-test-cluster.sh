#!/usr/bin/env bash
# A one-node Slurm cluster for jobd's tests, entirely under DIR, on this machine.
#   scripts/slurm-test-cluster.sh up DIR     install if missing, start, wait for an idle node,
#                                            print SLURM_CONF=... (also in DIR/env)
#   scripts/slurm-test-cluster.sh down DIR   cancel its jobs, stop exactly the daemons it
#                                            started (by their PID files)
# Needs root (the daemons run as root, no systemd, no cgroups, no slurmdbd).
set -euo pipefail

cmd=${1:?usage: $0 up|down DIR}
dir=$(realpath -m "${2:?usage: $0 up|down DIR}")
conf="$dir/slurm.conf"
host=$(hostname -s)

stop_pidfile() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

down() {
    if [ -f "$conf" ] && [ -f "$dir/slurmctld.pid" ]; then
        # jobs outlive slurmd: cancel them and wait for an empty queue first
        SLURM_CONF=$conf scancel --full --quiet --user=root 2>/dev/null || true
        for _ in $(seq 100); do
            [ -z "$(SLURM_CONF=$conf squeue -h -t PD,R,CG 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munge/munged.pid"
}

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null \
        && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

up() {
    install
    down
    mkdir -p "$dir"/{state,spool,log,munge}
    chmod 755 "$dir"
    chmod 711 "$dir/munge"  # munged refuses a socket dir others cannot traverse
    [ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 400 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed"

    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    cat > "$conf" <<CONF
ClusterName=jobdtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MinJobAge=300
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
    slurmctld -f "$conf"
    slurmd -f "$conf" -N "$host"
    for _ in $(seq 300); do
        if SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | grep -q -E '^(idle|mix|alloc)'; then
            echo "SLURM_CONF=$conf" | tee "$dir/env"
            return 0
        fi
        sleep 0.1
    done
    echo "slurm did not come up; logs in $dir/log" >&2
    tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    return 1
}

case "$cmd" in
    up) up || { down; exit 1; } ;;  # a half-started cluster stops what it did start
    down) down ;;
    *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
