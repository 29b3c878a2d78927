#!/usr/bin/env bash
# Command-line behaviour of `veil quote`: exit statuses 0 accepted, 1 rejected,
# 2 usage or unreadable input. Uses the shared vectors ($VEIL_VECTORS or
# ../shared/vectors); skips with a message where they are absent. Output: TAP.
set -u
VEIL=${VEIL:-build/veil}
V=${VEIL_VECTORS:-../shared/vectors}
n=0
failed=0
t() { # NAME WANT_STATUS CMD...
    local name=$1 want=$2
    shift 2
    n=$((n + 1))
    out=$("$@" 2>/tmp/veil-quote-err.$$)
    local got=$?
    err=$(cat /tmp/veil-quote-err.$$)
    if [ "$got" -eq "$want" ]; then echo "ok $n - $name"; else
        failed=$((failed + 1)); echo "not ok $n - $name (exit $got, want $want)"; echo "# $out"; echo "# $err"; fi
}
has() { # NAME PATTERN: the last command's stdout matches
    n=$((n + 1))
    if grep -qE "$2" <<<"$out"; then echo "ok $n - $1"; else failed=$((failed + 1)); echo "not ok $n - $1"; echo "# $out"; fi
}

t "quote --help" 0 "$VEIL" quote --help
t "verify without a file" 2 "$VEIL" quote verify
t "verify a missing file" 2 "$VEIL" quote verify /nonexistent/quote
t "verify with a bad --at" 2 "$VEIL" quote verify --at yesterday /dev/null
t "verify an empty file" 1 "$VEIL" quote verify /dev/null
[[ "$err" == *QUOTE_TRUNCATED* ]] && echo "ok $((n += 1)) - names QUOTE_TRUNCATED" || { echo "not ok $((n += 1)) - names QUOTE_TRUNCATED"; failed=$((failed + 1)); }

if [ ! -f "$V/EXPECTED_PARSE.json" ]; then
    echo "ok $((n += 1)) - vector checks # SKIP shared vectors not found at $V (set VEIL_VECTORS)"
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
    t "--root that is not a certificate" 2 "$VEIL" quote verify --root "$V/EXPECTED_PARSE.json" "$V/tdx/dcap-qvl/sample_tdx_quote"
fi
rm -f /tmp/veil-quote-err.$$
echo "1..$n"
[ "$failed" -eq 0 ]
