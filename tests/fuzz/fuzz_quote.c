/* libFuzzer target for the DCAP quote parser and the collateral-free
 * verifier (chain parsing, signature checks) on arbitrary bytes, in binary
 * and through the hex loader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/quote.h"

static void check(const uint8_t *buf, size_t len) {
    veil_quote q;
    veil_quote_code why;
    veil_err err;
    if (veil_quote_parse(&q, buf, len, &why, &err) != VEIL_OK) {
        if (why == VEIL_QUOTE_OK)
            abort(); /* a refusal always says why */
        return;
    }
    if (q.signed_len > len || q.trailing_len > len || (q.chain && q.chain + q.chain_len > buf + len))
        abort();
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    opts.at = 1700000000;
    veil_quote_verdict v;
    if (veil_quote_verify(&v, &q, &opts, &err) == VEIL_OK && v.code == VEIL_QUOTE_OK)
        abort(); /* nothing the fuzzer makes can carry Intel's signatures */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check(data, size);
    uint8_t *buf;
    size_t len;
    if (veil_quote_load(&buf, &len, data, size, NULL) == VEIL_OK) {
        check(buf, len);
        free(buf);
    }
    return 0;
}
