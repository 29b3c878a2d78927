/* libFuzzer target for the tokenizers: arbitrary bytes (any UTF-8, valid or
 * not) through byte-level BPE with the llama-3 and qwen2 pre-tokenizers and
 * through the SentencePiece-style tokenizer, on models synthesized once.
 * Valid UTF-8 must decode back to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "veil/engine.h"

static veil_llm *models[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const struct { veil_arch arch; int spm; } kinds[3] = {{VEIL_ARCH_QWEN2, 0}, {VEIL_ARCH_LLAMA, 0}, {VEIL_ARCH_LLAMA, 1}};
    for (int i = 0; i < 3; i++) {
        char path[96];
        snprintf(path, sizeof path, "/tmp/veil-fuzz-tok-%d-%d.gguf", (int)getpid(), i);
        veil_synth_opts o = veil_synth_tiny(kinds[i].arch, VEIL_GGML_F16);
        o.spm = kinds[i].spm;
        o.n_layers = 1;
        if (veil_synth_write(&o, path, NULL) != VEIL_OK || veil_llm_load(&models[i], path, NULL) != VEIL_OK) abort();
        unlink(path);
    }
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c < 0xE0) ? 2 : (c >= 0xE0 && c < 0xF0) ? 3 : (c >= 0xF0 && c < 0xF5) ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        if (k == 3) {
            unsigned cp = (c & 15u) << 12 | (s[i + 1] & 63u) << 6;
            if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        }
        if (k == 4) {
            unsigned cp = (c & 7u) << 18 | (s[i + 1] & 63u) << 12;
            if (cp < 0x10000 || cp > 0x10FFFF) return 0;
        }
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    int valid = valid_utf8(data, size) && !memchr(data, 0, size);
    for (int i = 0; i < 3; i++) {
        const veil_tokenizer *tok = veil_llm_tokenizer(models[i]);
        veil_tokens t = {0};
        if (!veil_tokenize(tok, (const char *)data, size, &t)) abort();
        char *out = malloc(size * 4 + 16);
        size_t n = 0;
        for (size_t k = 0; k < t.n; k++) {
            if (t.ids[k] < 0 || t.ids[k] >= veil_tokenizer_vocab(tok)) abort();
            n += veil_token_bytes(tok, t.ids[k], out + n, size * 4 + 16 - n);
        }
        size_t skip = i == 2 && size ? 1 : 0; /* SentencePiece's leading space */
        if (valid && i < 2 && (n != size || memcmp(out, data, size) != 0)) abort();
        /* SentencePiece writes spaces as U+2581, so a literal U+2581 comes back as a space */
        int has_2581 = memmem(data, size, "\xE2\x96\x81", 3) != NULL;
        if (valid && i == 2 && !has_2581 && (n != size + skip || memcmp(out + skip, data, size) != 0)) abort();
        free(out);
        veil_tokens_free(&t);
    }
    return 0;
}
