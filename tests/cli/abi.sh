#!/usr/bin/env bash
# libveil's ABI: libveil.so exports exactly the functions listed in
# src/libveil.map, every function libveil's public headers declare is in
# that list (internal helpers stay hidden), and a program linked against
# the shared library alone uses it (keys, an E2EE envelope both ways, an
# EIP-191 signature recovered). Output: TAP lines.
set -u
cd "$(dirname "$0")/../.."
build=$(dirname "${VEIL:-build/veil}")
so=$build/libveil.so
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the libveil headers: the public ones but the server side's engine.h and gguf.h
headers=$(ls include/veil/*.h | grep -vE '/(engine|gguf)\.h$')
grep -E '^\s+veil_[a-z0-9_]+;' src/libveil.map | tr -d ' ;' | sort >"$tmp/map"
nm -D --defined-only "$so" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort >"$tmp/exported"
if [ -s "$tmp/map" ] && diff -u "$tmp/map" "$tmp/exported" >"$tmp/diff"; then
    ok "libveil.so exports exactly the $(wc -l <"$tmp/map") functions of src/libveil.map"
else
    bad "libveil.so's exports differ from src/libveil.map" "$(head -20 "$tmp/diff")"
fi
other=$(nm -D --defined-only "$so" | awk '$2 != "T" && $2 != "A" { print $3 }')
if [ -z "$other" ]; then ok "libveil.so exports no data symbols"; else bad "libveil.so exports data" "$other"; fi

# every function the headers declare (gcc's -aux-info lists the prototypes with their files)
for h in $headers; do echo "#include \"veil/$(basename "$h")\""; done >"$tmp/all.c"
if cc -std=c17 -D_GNU_SOURCE -Iinclude -aux-info "$tmp/aux" -c "$tmp/all.c" -o "$tmp/all.o" 2>"$tmp/err"; then
    grep 'include/veil/' "$tmp/aux" | grep -v 'static' | grep -oE 'veil_[a-z0-9_]+ \(' | tr -d ' (' | sort -u >"$tmp/declared"
    missing=$(comm -23 "$tmp/declared" "$tmp/map")
    extra=$(comm -13 "$tmp/declared" "$tmp/map")
    if [ -s "$tmp/declared" ] && [ -z "$missing" ] && [ -z "$extra" ]; then
        ok "the $(wc -l <"$tmp/declared") functions libveil's headers declare are the export list"
    else
        bad "the headers and the export list differ" "declared, not exported: $missing" "exported, not declared: $extra"
    fi
else
    bad "libveil's public headers compile on their own" "$(cat "$tmp/err")"
fi
internal=$(nm -D --defined-only "$so" | grep -E ' (veil_x509_|veil_now_s|veil_utf8_|veil_thread_detached|veil_client_get_json)' || true)
if [ -z "$internal" ]; then ok "internal helpers (x509, clock, UTF-8, threads, client internals) are hidden"; else bad "internal helpers exported" "$internal"; fi

# a program that links libveil.so alone
cat >"$tmp/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/keys.h"
#include "veil/secure.h"
int main(void) {
    veil_seckey sk;
    veil_pubkey pk;
    if (veil_seckey_generate(&sk, NULL) != VEIL_OK || veil_pubkey_from_seckey(&pk, &sk, NULL) != VEIL_OK) return 1;
    char *hex = NULL;
    const char msg[] = "through the shared library";
    if (veil_ecies_seal_hex(&hex, &pk, (const uint8_t *)msg, sizeof msg - 1, NULL) != VEIL_OK) return 2;
    uint8_t *pt = NULL;
    size_t n = 0;
    if (veil_ecies_open_hex(&pt, &n, &sk, hex, strlen(hex), NULL) != VEIL_OK) return 3;
    int same = n == sizeof msg - 1 && memcmp(pt, msg, n) == 0;
    uint8_t sig[VEIL_SIGNATURE_LEN], want[20], got[20];
    char s[VEIL_SIGNATURE_STR_LEN + 1];
    if (veil_eip191_sign(sig, &sk, msg, sizeof msg - 1, NULL) != VEIL_OK) return 4;
    veil_signature_to_string(s, sig);
    veil_eth_address(want, &pk);
    if (veil_eip191_recover_address(got, msg, sizeof msg - 1, s, strlen(s), NULL) != VEIL_OK) return 5;
    printf("%s %s\n", same ? "opened" : "differs", memcmp(want, got, 20) == 0 ? "recovered" : "wrong-signer");
    veil_free_secret(pt, n + 1);
    free(hex);
    veil_seckey_wipe(&sk);
    return 0;
}
C
san=""
nm -D "$so" | grep -q __asan_init && san="-fsanitize=address,undefined"
if cc -std=c17 $san -Iinclude "$tmp/prog.c" -o "$tmp/prog" -L"$build" -l:libveil.so -Wl,-rpath,"$PWD/$build" 2>"$tmp/err"; then
    out=$(ASAN_OPTIONS=detect_leaks=1 "$tmp/prog" 2>&1)
    if [ "$out" = "opened recovered" ]; then ok "a program linked against libveil.so alone seals, opens, signs and recovers"
    else bad "the program linked against libveil.so" "$out"; fi
    if ldd "$tmp/prog" | grep -q 'libveil.so'; then ok "it loads libveil.so at run time"; else bad "it does not load libveil.so"; fi
else
    bad "a program links against libveil.so alone" "$(cat "$tmp/err")"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
