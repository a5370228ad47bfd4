# Shared by the tests/cli_*.sh scripts (sourced, not a test itself): a temporary folder $T removed
# on exit, pass/fail counters, and the checks they use. Needs $B (the build folder).
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0

# expect CODE DESCRIPTION -- command...: run, compare the exit code, keep stdout/stderr in $T
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"
        sed 's/^/  stderr: /' "$T/err" | head -5
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}
has() { # has FILE PATTERN DESCRIPTION
    if grep -q -- "$2" "$T/$1"; then passes=$((passes + 1)); else
        echo "FAIL: $3: '$2' not in $1"; sed 's/^/  /' "$T/$1" | head -5; fails=$((fails + 1)); fi
}
json() { # json KEYS...: stdout parses as JSON with these keys
    if "$B/jsoncheck" "$@" <"$T/out"; then passes=$((passes + 1)); else
        echo "FAIL: json output"; head -3 "$T/out"; fails=$((fails + 1)); fi
}
