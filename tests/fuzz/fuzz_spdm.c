/* libFuzzer target for NVIDIA GPU evidence: the SPDM GET_MEASUREMENTS
 * parser on raw bytes (every parsed pointer must lie inside the input), and
 * the nvidia_payload JSON parser on the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/nvidia.h"

static void inside(const uint8_t *p, size_t n, const uint8_t *data, size_t size) {
    if (n && (p < data || p + n > data + size)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static veil_spdm_report r;
    if (veil_spdm_parse(&r, data, size, NULL) == VEIL_OK) {
        for (unsigned i = 0; i < r.n_blocks; i++) inside(r.blocks[i].value, r.blocks[i].value_size, data, size);
        for (size_t i = 0; i < r.n_opaque; i++) inside(r.opaque[i].value, r.opaque[i].size, data, size);
        inside(r.signature, 96, data, size);
        if (r.signed_len + 96 != size || strlen(r.driver_version) >= sizeof r.driver_version) abort();
    }
    veil_gpu_payload p;
    if (veil_gpu_payload_parse(&p, (const char *)data, size, NULL) == VEIL_OK) {
        if (p.n == 0) abort();
        veil_gpu_verdict v;
        uint8_t nonce[32] = {0};
        veil_gpu_verify_opts o = {nonce, 1700000000, NULL, 0, NULL};
        if (veil_gpu_verify(&v, &p, &o, NULL) == VEIL_OK) veil_gpu_verdict_clear(&v);
        veil_gpu_payload_clear(&p);
    }
    return 0;
}
