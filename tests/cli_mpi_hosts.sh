#!/usr/bin/env bash
# Data-parallel lora-train and lora-teacher across two "hosts": network namespaces on this machine
# joined by a veth pair, mpirun over TCP between them (tests/lib_netns.sh), on stories260K-hf:
#   - 2 hosts give the bytes that 2 ranks on one host give (the gradient sum's order does not
#     depend on the transport), and lora-teacher the single process's cache;
#   - a run resumes across hosts from its checkpoint to the uninterrupted run's bytes;
#   - the rank on the other host killed with SIGKILL: the job stops within seconds, mpirun naming
#     the lost rank; the last checkpoint resumes to the uninterrupted run's bytes;
#   - SIGTERM to both ranks: they stop after the same step, rank 0 saves once, exit 143.
# Skips (exit 77) when lorakit was built without MPI, or network namespaces are not permitted
# (CI runs as root, where they are).
# Usage: cli_mpi_hosts.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_mpi.sh"
. "$SRC/tests/lib_netns.sh"
trap 'netns_down; rm -rf "$T"' EXIT
netns_up
TR=$B/lora-train

R3=("${BASE[@]}" --steps 3 --batch 2)
expect 0 "2 ranks on one host" -- mpi 2 "$TR" "${R3[@]}" -o "$T/one"
expect 0 "2 hosts" -- hosts "$TR" "${R3[@]}" -o "$T/two" --json
grep '"type":"step"' "$T/out" | "$B/jsoncheck" allreduce_bytes allreduce_s && ok ||
    bad "--json: what the gradient sum cost"
has out '"ranks":2,' "--json: 2 ranks"
same "$T/one/adapter_model.safetensors" "$T/two/adapter_model.safetensors" "2 hosts = 1 host"
same "$T/one/checkpoint-3/state.ckpt" "$T/two/checkpoint-3/state.ckpt" "2 hosts' state"
TEACH=(-m "$M" --data "$D" --seq-len 128 --top-k 8 -t 1 -q)
expect 0 "teacher cache, 1 process" -- "$B/lora-teacher" "${TEACH[@]}" -o "$T/c1.lktc"
expect 0 "teacher cache, 2 hosts" -- hosts "$B/lora-teacher" "${TEACH[@]}" -o "$T/c2.lktc"
same "$T/c1.lktc" "$T/c2.lktc" "the cache of 2 hosts"

expect 0 "uninterrupted run on 2 hosts" -- hosts "$TR" "${RL[@]}" -o "$T/ref"
start() { start_run "$1" hosts; }
finish() { resume_run "$1" "$T/ref" hosts; }

start kill
kill -KILL "$(ns_rank_pid "$NS_B")"
t0=$(date +%s)
wait "$job"
code=$? secs=$(($(date +%s) - t0))
[ "$code" != 0 ] && [ "$secs" -le 15 ] && ok ||
    bad "the other host's rank killed: mpirun exit $code after $secs s (nonzero, <= 15 s)"
grep -q "process rank 1 with PID .* exited on signal 9" "$T/kill.err" && ok ||
    { bad "the lost rank is not named"; tail -5 "$T/kill.err"; }
finish kill

start term
kill -TERM "$(ns_rank_pid "$NS_B")" "$(ns_rank_pid "$NS_A")"
wait "$job"
code=$?
[ "$code" = 143 ] && ok || bad "SIGTERM: mpirun exit $code, expected 143"
step=$(grep -o 'interrupted at step [0-9]*' "$T/term.err" | grep -o '[0-9]*$')
[ -n "$step" ] && [ "$(grep -c "checkpoint saved to .*/checkpoint-$step\$" "$T/term.err")" = 1 ] &&
    ok || { bad "SIGTERM: the step stopped at is not saved once"; tail -5 "$T/term.err"; }
finish term

echo "cli_mpi_hosts: $passes passed, $fails failed"
[ "$fails" = 0 ]
