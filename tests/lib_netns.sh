# Shared by tests/cli_mpi_hosts.sh and tools/bench_mpi.sh (sourced after lib_mpi.sh; not a test
# itself): two "hosts" on this machine, network namespaces joined by a veth pair, with addresses
# from 198.18.0.0/24 (RFC 2544's range for network tests) that exist only inside them; mpirun runs
# in the first and starts Open MPI's daemon in the second through an rsh agent that enters it
# (in place of ssh), and the ranks talk over TCP. Needs $T; removed by netns_down (an EXIT trap).

NS_A=lkmpi$$a NS_B=lkmpi$$b
VETH_A=lkv$$a VETH_B=lkv$$b
HOST_A=198.18.0.1 HOST_B=198.18.0.2

netns_down() {
    ip netns del "$NS_A" 2>/dev/null
    ip netns del "$NS_B" 2>/dev/null # deleting a namespace deletes its end of the veth pair
}

# netns_up: make the two hosts, or skip (exit 77) where namespaces are not permitted.
netns_up() {
    command -v ip >/dev/null || skip "no ip command (install iproute2)"
    ip netns add "$NS_A" 2>"$T/netns.err" ||
        skip "network namespaces are not permitted here ($(head -1 "$T/netns.err"))"
    ip netns add "$NS_B" &&
        ip link add "$VETH_A" type veth peer name "$VETH_B" &&
        ip link set "$VETH_A" netns "$NS_A" && ip link set "$VETH_B" netns "$NS_B" &&
        ip -n "$NS_A" addr add "$HOST_A/24" dev "$VETH_A" &&
        ip -n "$NS_B" addr add "$HOST_B/24" dev "$VETH_B" &&
        ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up &&
        ip -n "$NS_A" link set "$VETH_A" up && ip -n "$NS_B" link set "$VETH_B" up ||
        skip "could not set up the veth pair between the namespaces"
    # the rsh agent: "agent HOST COMMAND..." runs COMMAND in HOST's namespace
    cat >"$T/agent.sh" <<EOF
#!/bin/sh
h=\$1
shift
case \$h in $HOST_B) ns=$NS_B ;; *) ns=$NS_A ;; esac
exec ip netns exec \$ns sh -c "\$*"
EOF
    chmod +x "$T/agent.sh"
    printf '%s slots=1\n%s slots=1\n' "$HOST_A" "$HOST_B" >"$T/hosts"
}

# hosts ARGS...: mpirun over the two hosts, one rank on each, at most 300 s (leak detection off,
# as mpirun_ in lib_mpi.sh says).
hosts() {
    ip netns exec "$NS_A" env ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0" \
        timeout -k 5 300 mpirun -np 2 --hostfile "$T/hosts" \
        --mca plm_rsh_agent "$T/agent.sh" --bind-to none --mca btl tcp,self \
        --mca btl_tcp_if_include 198.18.0.0/24 --mca oob_tcp_if_include 198.18.0.0/24 "$@"
}

# limit RATE: shape both ends of the link to RATE (e.g. 1gbit; "none" removes it) with tc netem,
# or with a token bucket (tbf) where the kernel has no netem; echoes the qdisc used.
limit() {
    local ns dev q=none
    for ns in "$NS_A:$VETH_A" "$NS_B:$VETH_B"; do
        dev=${ns#*:} ns=${ns%%:*}
        ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null
        [ "$1" = none ] && continue
        if ip netns exec "$ns" tc qdisc add dev "$dev" root netem rate "$1" 2>/dev/null; then
            q=netem
        else # the burst holds a few 64 KiB segments (offloads) and 1 ms at 10 Gbit/s
            ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$1" burst 4mb latency 100ms &&
                q=tbf
        fi
    done
    echo "$q"
}

# ns_rank_pid NS: the pid of the lora-* rank running in namespace NS (empty when none).
ns_rank_pid() {
    local p
    for p in $(ip netns pids "$1"); do
        case $(cat "/proc/$p/comm" 2>/dev/null) in lora-*) echo "$p" && return ;; esac
    done
}
