#!/usr/bin/env bash
# A real two-node SLURM on this one host for the cluster tests: Debian's slurm-wlm + munge, two slurmd
# (nodes n1 and n2, told apart by port; Debian's build has --enable-multiple-slurmd: `scontrol show
# config` says MULTIPLE_SLURMD = Yes), partitions named as in config/config.yaml (`cluster:`), GPUs
# as GRES on dummy device files (slurmd marks a node INVAL without `File=`). Needs root. Idempotent:
# a running cluster of both nodes is left as it is.
#
# Why the settings: no systemd here, so the daemons are started by hand; no accounting database, so
# the test run asks squeue for job states (MinJobAge keeps finished jobs visible to it) and submits
# without an account; the config lives in /etc/slurm because the plugin's job step drops SLURM_CONF.
# Both nodes are this host: a job step's tasks tell them apart by SLURMD_NODENAME, not the hostname.
set -euo pipefail
GPU_PARTITION=${1:-b200}
CPU_PARTITION=${2:-cpu}
HOST=$(hostname -s)
NODES="n1 n2"

# Both nodes usable (sinfo -N lists a node once per partition).
nodes_ready() {
    [ "$(timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null | grep -E ' (idle|mix|mixed|alloc|allocated)$' | cut -d' ' -f1 | sort -u | wc -l)" -ge 2 ]
}
if pgrep -x slurmctld >/dev/null && nodes_ready; then
    echo "slurm already running"; exit 0
fi
# Anything half-started goes; wait for it to exit, or the start below sees it and skips.
pkill -x slurmd || true; pkill -x slurmctld || true
for _ in $(seq 50); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.2; done

for n in 0 1 2 3 4 5 6 7; do [ -e /dev/fakegpu$n ] || ln -s /dev/null /dev/fakegpu$n; done
mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm /run/munge
for node in $NODES; do mkdir -p /var/spool/slurmd-$node; done
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=crossdiff-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MpiDefault=none
# Trust the node line below over what slurmd detects (it declares more CPUs than the machine has).
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=86400
DefMemPerCPU=1000
# More CPUs than the machine has, so several small test jobs run at once.
NodeName=n1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17001 CPUs=8 RealMemory=16000 Gres=gpu:4 State=UNKNOWN
NodeName=n2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17002 CPUs=8 RealMemory=16000 Gres=gpu:4 State=UNKNOWN
PartitionName=$GPU_PARTITION Nodes=n1,n2 MaxTime=INFINITE State=UP
PartitionName=$CPU_PARTITION Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
printf 'NodeName=n1 Name=gpu File=/dev/fakegpu[0-3]\nNodeName=n2 Name=gpu File=/dev/fakegpu[4-7]\n' > /etc/slurm/gres.conf
rm -f /var/log/slurm/jobcomp.log

[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
slurmctld -c    # -c: start from a clean state (no jobs from an earlier run)
for node in $NODES; do slurmd -N $node; done
for _ in $(seq 60); do
    nodes_ready && { sinfo -N; exit 0; }
    sleep 0.5
done
echo "slurm did not come up:" >&2; sinfo >&2 || true; tail -n 5 /var/log/slurm/slurm*.log >&2; exit 1
