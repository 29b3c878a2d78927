#!/usr/bin/env bash
# Command-line behaviour of `veil tee` with the simulated TDX platform: a
# quote verifies end to end with the simulation root and collateral, is
# refused with Intel's root, and the root is stable across restarts. TAP.
set -u
VEIL=${VEIL:-build/veil}
. "$(dirname "$0")/lib.sh"

state=$(mktemp -d)
export VEIL_STATE_DIR=$state/veil
rd=$(printf '5a%.0s' $(seq 64))

t "tee --help" 0 "$VEIL" tee --help
t "quote without report data" 2 "$VEIL" tee quote --tee sim
t "quote with short report data" 2 "$VEIL" tee quote --tee sim --report-data abcd
t "quote with an unknown --tee" 2 "$VEIL" tee quote --tee sgx --report-data "$rd"
t "quote from configfs-tsm where there is none" 1 "$VEIL" tee quote --tee tdx --configfs "$state/none" --report-data "$rd"
t "sim-root" 0 "$VEIL" tee sim-root
root1=$out
check "sim-root is a PEM certificate" grep -q "BEGIN CERTIFICATE" <<<"$root1"
t "sim-root again" 0 "$VEIL" tee sim-root
check "sim-root is stable across restarts" test "$out" = "$root1"
t "sim-root of another state directory" 0 "$VEIL" tee sim-root --state "$state/other"
check "another state directory, another root" test "$out" != "$root1"
printf '%s\n' "$root1" >"$state/root.pem"
check "the root is not Intel's name" bash -c "openssl x509 -in '$state/root.pem' -noout -subject | grep -q 'veil simulated SGX Root CA'"
t "sim-collateral without --out" 2 "$VEIL" tee sim-collateral
t "sim-collateral" 0 "$VEIL" tee sim-collateral --out "$state/collateral.json"
t "simulated quote" 0 "$VEIL" tee quote --tee sim --report-data "$rd" --out "$state/quote.bin" --event-log-out "$state/log.json"
check "says it is simulated" grep -q "SIMULATED" <<<"$err"
t "simulated quote verifies end to end with its root and collateral" 0 \
    "$VEIL" quote verify --root "$state/root.pem" --collateral "$state/collateral.json" --event-log "$state/log.json" --json "$state/quote.bin"
check "UpToDate" grep -q '"tcb_status": "UpToDate"' <<<"$out"
check "REPORTDATA is what was asked" grep -q "\"report_data\": \"$rd\"" <<<"$out"
t "simulated quote refused with Intel's root" 1 "$VEIL" quote verify "$state/quote.bin"
check "ROOT_NOT_TRUSTED" grep -q ROOT_NOT_TRUSTED <<<"$out"
t "hex output" 0 "$VEIL" tee quote --tee sim --report-data "$rd"
check "hex quote" bash -c '[[ "$0" =~ ^[0-9a-f]+$ ]]' "$out"
t "revoked PCK collateral" 0 "$VEIL" tee sim-collateral --revoke-pck --out "$state/revoked.json"
t "quote refused under collateral revoking its PCK" 1 "$VEIL" quote verify --root "$state/root.pem" --collateral "$state/revoked.json" "$state/quote.bin"
check "CERT_REVOKED" grep -q CERT_REVOKED <<<"$out"
check "keys are private" bash -c "[ \"\$(stat -c %a '$state/veil/sim-tdx/root.key')\" = 600 ]"

rm -rf "$state"
finish
