#!/usr/bin/env bash
# Command-line behaviour of `veil crypto`: outputs, exit statuses (0 ok,
# 1 bad input, 2 usage) and one-line errors. Output: TAP lines.
set -u
VEIL=${VEIL:-build/veil}
n=0
failed=0

# expect NAME WANT_STATUS STDIN CMD... : runs CMD, checks its exit status,
# leaves stdout in $out and stderr in $err.
expect() {
    local name=$1 want=$2 input=$3
    shift 3
    n=$((n + 1))
    out=$(printf '%s' "$input" | "$@" 2>/tmp/veil-cli-err.$$)
    local got=$?
    err=$(cat /tmp/veil-cli-err.$$)
    if [ "$got" -eq "$want" ]; then
        echo "ok $n - $name"
    else
        failed=$((failed + 1))
        echo "not ok $n - $name (exit $got, want $want)"
        echo "# stderr: $err"
    fi
}
# assert NAME CONDITION... : a further check on the last command's output.
assert() {
    local name=$1
    shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $name"; else failed=$((failed + 1)); echo "not ok $n - $name"; echo "# stdout: $out"; echo "# stderr: $err"; fi
}
one_line_error() { [ -z "$out" ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [[ "$err" == veil:* ]]; }
usage_error() { [ -z "$out" ] && [[ "$err" == veil:* ]] && [[ "$err" == *"Try 'veil"* ]]; }

KEY=4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318
PUB=$($VEIL crypto pubkey $KEY)

expect "veil --help" 0 "" "$VEIL" --help
assert "help lists the crypto command" grep -q "crypto" <<<"$out"
expect "veil help" 0 "" "$VEIL" help
expect "veil version" 0 "" "$VEIL" version
expect "veil with no command is a usage error" 2 "" "$VEIL"
assert "usage error points to --help" usage_error
expect "unknown command" 2 "" "$VEIL" frobnicate
assert "names the unknown command" grep -q frobnicate <<<"$err"
expect "veil crypto --help" 0 "" "$VEIL" crypto --help
assert "crypto help lists encrypt" grep -q "encrypt --to" <<<"$out"
expect "veil crypto encrypt --help" 0 "" "$VEIL" crypto encrypt --help
expect "unknown crypto command" 2 "" "$VEIL" crypto nope
expect "encrypt without --to" 2 "hi" "$VEIL" crypto encrypt
assert "says --to is needed" grep -q -- "--to" <<<"$err"
expect "decrypt with an unknown option" 2 "" "$VEIL" crypto decrypt --key $KEY --bogus
expect "pubkey with two arguments" 2 "" "$VEIL" crypto pubkey $KEY $KEY

expect "keygen" 0 "" "$VEIL" crypto keygen
assert "keygen prints three labelled lines" test "$(grep -cE '^(private_key: [0-9a-f]{64}|public_key: 04[0-9a-f]{128}|address: 0x[0-9a-fA-F]{40})$' <<<"$out")" -eq 3
priv=$(sed -n 's/^private_key: //p' <<<"$out")
pub=$(sed -n 's/^public_key: //p' <<<"$out")
addr=$(sed -n 's/^address: //p' <<<"$out")
expect "pubkey of keygen's key" 0 "" "$VEIL" crypto pubkey "$priv"
assert "pubkey agrees with keygen" test "$out" = "$pub"
expect "address of keygen's key" 0 "" "$VEIL" crypto address "$pub"
assert "address agrees with keygen" test "$out" = "$addr"

expect "pubkey of a non-hex key" 1 "" "$VEIL" crypto pubkey zz
assert "one-line error for a bad private key" one_line_error
expect "pubkey of the zero key" 1 "" "$VEIL" crypto pubkey 0000000000000000000000000000000000000000000000000000000000000000
expect "address of a point off the curve" 1 "" "$VEIL" crypto address "${PUB%?}0"
assert "one-line error naming the curve" grep -q "not a point" <<<"$err"
expect "address of a compressed key" 1 "" "$VEIL" crypto address "02${PUB:2:64}"

expect "encrypt to a bad key" 1 "hi" "$VEIL" crypto encrypt --to 04abcd
assert "one-line error for a bad recipient" one_line_error
expect "encrypt" 0 "round trip" "$VEIL" crypto encrypt --to "$PUB"
env_hex=$out
expect "decrypt" 0 "$env_hex" "$VEIL" crypto decrypt --key $KEY
assert "decrypt returns the exact plaintext" test "$out" = "round trip"
expect "decrypt with another key" 1 "$env_hex" "$VEIL" crypto decrypt --key "$priv"
assert "wrong key: AUTH_FAILED, no plaintext" bash -c '[[ "$0" == *AUTH_FAILED* ]]' "$err"
expect "decrypt plaintext" 1 "What is 2+2?" "$VEIL" crypto decrypt --key $KEY
assert "plaintext input: NOT_HEX" grep -q NOT_HEX <<<"$err"
expect "decrypt an empty input" 1 "" "$VEIL" crypto decrypt --key $KEY

expect "sign the documented vector" 0 "" "$VEIL" crypto sign --key $KEY "Some data"
assert "documented signature" test "$out" = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
sig=$out
expect "recover the documented vector" 0 "" "$VEIL" crypto recover --signature "$sig" "Some data"
assert "documented address" test "$out" = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
expect "sign text from stdin" 0 "Some data" "$VEIL" crypto sign --key $KEY -
assert "stdin text signs the same" test "$out" = "$sig"
expect "recover a truncated signature" 1 "" "$VEIL" crypto recover --signature "${sig%??}" "Some data"
assert "one-line error for a bad signature" one_line_error
expect "recover with v = 31" 1 "" "$VEIL" crypto recover --signature "${sig%??}1f" "Some data"

expect "keccak of the empty string" 0 "" "$VEIL" crypto keccak ""
assert "keccak256('') as protocol.md states" test "$out" = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"

rm -f /tmp/veil-cli-err.$$
echo "1..$n"
[ "$failed" -eq 0 ]
