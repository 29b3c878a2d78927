#!/usr/bin/env bash
# Command-line behaviour of `veil quote`: exit statuses 0 accepted, 1 rejected,
# 2 usage or unreadable input. Uses the shared vectors ($VEIL_VECTORS or
# ../shared/vectors); skips with a message where they are absent. Output: TAP.
set -u
VEIL=${VEIL:-build/veil}
V=${VEIL_VECTORS:-../shared/vectors}
. "$(dirname "$0")/lib.sh"

t "quote --help" 0 "$VEIL" quote --help
t "verify without a file" 2 "$VEIL" quote verify
t "verify a missing file" 2 "$VEIL" quote verify /nonexistent/quote
t "verify with a bad --at" 2 "$VEIL" quote verify --at yesterday /dev/null
t "verify an empty file" 1 "$VEIL" quote verify /dev/null
check "names QUOTE_TRUNCATED" grep -q QUOTE_TRUNCATED <<<"$err"

if [ ! -f "$V/EXPECTED_PARSE.json" ]; then
    n=$((n + 1))
    echo "ok $n - vector checks # SKIP shared vectors not found at $V (set VEIL_VECTORS)"
else
    t "show a binary v4 quote" 0 "$VEIL" quote show "$V/tdx/dcap-qvl/sample_tdx_quote"
    has "show prints MRTD" '"mr_td": "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"'
    t "show a 0x-hex quote" 0 "$VEIL" quote show "$V/tdx/dcap-qvl/sample_tdx-quote.hex"
    t "verify a real quote" 0 "$VEIL" quote verify --at 1752919234 "$V/tdx/dcap-qvl/sample_tdx_quote"
    has "accepted" "^accepted"
    t "verify --json" 0 "$VEIL" quote verify --json --at 1752919234 "$V/tdx/dcap-qvl/sample_tdx_quote"
    has "json verdict" '"accepted": true'
    t "verify after the PCK certificate expired" 1 "$VEIL" quote verify --at 2635030800 "$V/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"
    has "CERT_EXPIRED" "CERT_EXPIRED"
    t "Intel's synthetic quote against the real root" 1 "$VEIL" quote verify "$V/tdx/intel_qvl_synthetic/tdx/quote.dat"
    has "ROOT_NOT_TRUSTED" "ROOT_NOT_TRUSTED"
    t "Intel's synthetic quote with --root" 0 "$VEIL" quote verify --root "$V/tdx/intel_qvl_synthetic/tdx/trustedRootCaCert.pem" "$V/tdx/intel_qvl_synthetic/tdx/quote.dat"
    D=$V/tdx/dcap-qvl
    t "verify with collateral" 0 "$VEIL" quote verify --collateral "$D/sample_tdx_quote_collateral.json" --at 1752919234 "$D/sample_tdx_quote"
    has "UpToDate" "^tcb_status: UpToDate"
    t "SGX sample with collateral: status not accepted by default" 1 "$VEIL" quote verify --json --collateral "$D/sample_sgx_quote_collateral.json" --at 1752919277 "$D/sample_sgx_quote"
    has "json tcb_status" '"tcb_status": "ConfigurationAndSWHardeningNeeded"'
    has "json advisories" '"INTEL-SA-00289"'
    has "json code" '"code": "TCB_STATUS_REJECTED"'
    tmp=$(mktemp -d)
    echo '{"accepted_tcb_statuses":["ConfigurationAndSWHardeningNeeded"]}' >"$tmp/accept.json"
    t "SGX sample with a policy that accepts its status" 0 "$VEIL" quote verify --policy "$tmp/accept.json" --collateral "$D/sample_sgx_quote_collateral.json" --at 1752919277 "$D/sample_sgx_quote"
    echo '{"mrtd":"00"}' >"$tmp/bad.json"
    t "policy with a pin of the wrong length" 2 "$VEIL" quote verify --policy "$tmp/bad.json" "$D/sample_tdx_quote"
    echo '{"colour":"blue"}' >"$tmp/unknown.json"
    t "policy with an unknown key" 2 "$VEIL" quote verify --policy "$tmp/unknown.json" "$D/sample_tdx_quote"
    echo '{"require_collateral":true}' >"$tmp/strict.json"
    t "require_collateral without collateral" 1 "$VEIL" quote verify --policy "$tmp/strict.json" --at 1752919234 "$D/sample_tdx_quote"
    has "COLLATERAL_MISSING" "COLLATERAL_MISSING"
    t "collateral that is not JSON" 2 "$VEIL" quote verify --collateral "$D/sample_tdx_quote" "$D/sample_tdx_quote"
    t "event log that replays" 0 "$VEIL" quote verify --event-log "$V/tdx/dstack/sdk_simulator_eventlog.json" "$V/tdx/dstack/sdk_simulator_quote.hex"
    t "CCEL log that replays" 0 "$VEIL" quote verify --event-log "$V/tdx/go-tdx-guest/ccel_ccel_data.dat" "$V/tdx/go-tdx-guest/ccel_cos-113-tdx-quote.dat"
    t "event log of another TD" 1 "$VEIL" quote verify --event-log "$V/tdx/dstack/sdk_simulator_eventlog.json" "$D/sample_tdx_quote"
    has "MEASUREMENT_MISMATCH" "MEASUREMENT_MISMATCH"
    t "event log that is not one" 2 "$VEIL" quote verify --event-log "$D/sample_tdx_quote_collateral.json" "$D/sample_tdx_quote"
    rm -rf "$tmp"
    t "--root that is not a certificate" 2 "$VEIL" quote verify --root "$V/EXPECTED_PARSE.json" "$V/tdx/dcap-qvl/sample_tdx_quote"
fi
finish
