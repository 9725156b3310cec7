#!/usr/bin/env bash
# kick sweep --slurm against a real single-node Slurm cluster started here (Debian's slurm-wlm and munge, run as
# root from a temporary folder, on free ports): the job arrays run every compression and evaluation, the report
# step merges them, and the report equals a local sweep's; a resubmission after that has nothing left to run.
# Exits 77 (skipped) where Slurm is not installed or cannot run (not root).
#   slurm_sweep.sh KICK EXPERIMENT WORKDIR
set -euo pipefail
kick=$1 experiment=$2 work=$3
fail() { echo "slurm_sweep: $*" >&2; exit 1; }
skip() { echo "slurm_sweep: skipped: $*" >&2; exit 77; }
for tool in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurm-wlm munge)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd needs root"

rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
cluster=$work/cluster
mkdir -p "$cluster"/{munge,state,spool,log}
chmod 700 "$cluster/munge"
head -c 1024 /dev/urandom >"$cluster/munge/munge.key"
chmod 600 "$cluster/munge/munge.key"

cleanup() {
  for pidfile in "$cluster/slurmd.pid" "$cluster/slurmctld.pid" "$cluster/munge/munged.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
[ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$(free_port)
node=$(hostname -s)
cpus=$(nproc)
memory_mib=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)

munged --force --key-file="$cluster/munge/munge.key" --socket="$cluster/munge/munge.sock" \
  --pid-file="$cluster/munge/munged.pid" --log-file="$cluster/munge/munged.log" --seed-file="$cluster/munge/seed" ||
  skip "munged did not start"

cat >"$cluster/slurm.conf" <<EOF
ClusterName=kicktest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cluster/munge/munge.sock
StateSaveLocation=$cluster/state
SlurmdSpoolDir=$cluster/spool
SlurmctldPidFile=$cluster/slurmctld.pid
SlurmdPidFile=$cluster/slurmd.pid
SlurmctldLogFile=$cluster/log/slurmctld.log
SlurmdLogFile=$cluster/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mib State=UNKNOWN
PartitionName=kick Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$cluster/slurm.conf
slurmctld -f "$SLURM_CONF" || skip "slurmctld did not start: $(tail -3 "$cluster/log/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" || skip "slurmd did not start: $(tail -3 "$cluster/log/slurmd.log" 2>/dev/null)"
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.5
done
sinfo -h -o %t | grep -q idle || fail "the Slurm node never became idle: $(sinfo 2>&1; tail -5 "$cluster/log/slurmctld.log")"

# Reference: the same experiment run locally.
"$kick" sweep "$experiment" -o "$work/local" -j 2 -t 1 >"$work/local.log" 2>&1 || { cat "$work/local.log"; fail "local sweep failed"; }

wait_for_queue() {
  for _ in $(seq 1200); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 0.25
  done
  squeue
  fail "Slurm jobs still queued or running after 300 s"
}

"$kick" sweep "$experiment" -o "$work/slurm" -t 1 --slurm >"$work/submit.out" 2>"$work/submit.log" || {
  cat "$work/submit.log"; fail "kick sweep --slurm failed"; }
grep -q '^compress [0-9]' "$work/submit.out" || fail "no compress array submitted: $(cat "$work/submit.out")"
grep -q '^evaluate [0-9]' "$work/submit.out" || fail "no evaluate array submitted: $(cat "$work/submit.out")"
grep -q '^report [0-9]' "$work/submit.out" || fail "no report step submitted: $(cat "$work/submit.out")"
wait_for_queue

cells=$(find "$work/local/evals" -name sweep_cell.json | wc -l)
slurm_cells=$(find "$work/slurm/evals" -name sweep_cell.json | wc -l)
[ "$slurm_cells" -eq "$cells" ] || { tail -n 20 "$work"/slurm/logs/slurm-*.out; fail "$slurm_cells of $cells cells finished under Slurm"; }
[ -f "$work/slurm/report.md" ] || fail "the report step did not write report.md: $(cat "$work"/slurm/logs/slurm-*.out | tail -20)"
"$kick" report "$work/local" >/dev/null 2>&1
diff -u "$work/local/report.md" "$work/slurm/report.md" || fail "the Slurm sweep's report differs from the local sweep's"

# Resubmitting a finished sweep submits only the report step.
"$kick" sweep "$experiment" -o "$work/slurm" -t 1 --slurm >"$work/resubmit.out" 2>"$work/resubmit.log"
grep -q ', 0 jobs to run' "$work/resubmit.log" || fail "a finished sweep still had jobs to run: $(cat "$work/resubmit.log")"
[ "$(grep -c '' "$work/resubmit.out")" -eq 1 ] && grep -q '^report [0-9]' "$work/resubmit.out" ||
  fail "resubmission should submit the report step alone: $(cat "$work/resubmit.out")"
wait_for_queue
echo "slurm_sweep: ok ($cells cells through $(grep -c '' "$work/submit.out") Slurm submissions)"
