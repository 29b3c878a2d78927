/* libFuzzer target for the GGUF reader: any bytes either parse into a file
 * whose every tensor lies inside the input, or are refused; what parses is
 * then read as a tokenizer too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/engine.h"
#include "veil/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    veil_gguf *g = NULL;
    if (veil_gguf_parse(&g, data, size, NULL) != VEIL_OK) {
        if (g) abort();
        return 0;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const veil_gguf_tensor *t = &g->tensors[i];
        if (t->data < data || t->data + t->size > data + size) abort();
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const veil_gguf_kv *kv = &g->kv[i];
        for (uint64_t k = 0; kv->type == VEIL_GGUF_ARRAY && k < kv->arr_count && k < 64; k++) {
            veil_gguf_str s = veil_gguf_arr_str(kv, k);
            if (s.len && ((const uint8_t *)s.p < data || (const uint8_t *)s.p + s.len > data + size)) abort();
            (void)veil_gguf_arr_num(kv, k);
        }
    }
    veil_tokenizer *tok = NULL;
    if (veil_tokenizer_load(&tok, g, NULL) == VEIL_OK) {
        veil_tokens t = {0};
        static const char text[] = "Hello, world! 123 \xC3\xA9\xE2\x96\x81 don't";
        if (veil_tokenize(tok, text, sizeof text - 1, &t)) {
            char buf[64];
            for (size_t i = 0; i < t.n; i++) (void)veil_token_bytes(tok, t.ids[i], buf, sizeof buf);
        }
        veil_tokens_free(&t);
        veil_tokenizer_free(tok);
    }
    veil_gguf_close(g);
    return 0;
}
