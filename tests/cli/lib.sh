# Shared by the command-line test scripts: TAP helpers. Source it, then use
# t NAME WANT_STATUS CMD... (runs CMD, checks its exit status, leaves stdout
# in $out and stderr in $err) and check NAME CMD... (a further assertion),
# and end with finish.
n=0
failed=0
errfile=$(mktemp)

t() {
    local name=$1 want=$2
    shift 2
    n=$((n + 1))
    out=$("$@" 2>"$errfile")
    local got=$?
    err=$(cat "$errfile")
    if [ "$got" -eq "$want" ]; then
        echo "ok $n - $name"
    else
        failed=$((failed + 1))
        echo "not ok $n - $name (exit $got, want $want)"
        printf '%s\n' "$out" | sed 's/^/# stdout: /'
        printf '%s\n' "$err" | sed 's/^/# stderr: /'
    fi
}

check() {
    local name=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $name"
    else
        failed=$((failed + 1))
        echo "not ok $n - $name"
    fi
}

# has NAME REGEX: the last command's stdout matches.
has() { check "$1" grep -qE "$2" <<<"$out"; }

finish() {
    rm -f "$errfile"
    echo "1..$n"
    [ "$failed" -eq 0 ]
}
