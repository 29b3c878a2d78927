/* veil model: synthesize GGUF models, inspect them, tokenize text and run
 * the engine by hand (raw completion, logits for cross-checks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "veil/engine.h"

static void help(void) {
    puts("Usage: veil model <command> [options]\n"
         "\n"
         "Commands:\n"
         "  synth --arch qwen2|qwen3|llama --out FILE [--preset tiny|0.5b|1.5b]\n"
         "        [--type f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q5_k|q6_k|q4_k_m]\n"
         "        [--seed N] [--dim N] [--layers N] [--heads N] [--kv-heads N] [--head-dim N] [--ff N]\n"
         "        [--vocab N] [--ctx N] [--spm] [--name NAME] [--rope-scale F]\n"
         "                        write a GGUF model with deterministic random weights, a BPE\n"
         "                        vocabulary (--spm: SentencePiece-style, llama only) and a chat template\n"
         "  info FILE [--json]    architecture, shapes, tokenizer, template and tensor types\n"
         "  tokenize FILE (--text TEXT | --json-lines)\n"
         "                        token ids of TEXT (no special tokens), one JSON array; with\n"
         "                        --json-lines, a JSON string per stdin line gives one line of\n"
         "                        {\"ids\":[...],\"text\":\"the ids decoded\"}\n"
         "  run FILE (--prompt TEXT | --tokens 1,2,3) [--chat] [-n N] [--temperature T] [--seed N]\n"
         "        [--logits-out FILE] [--json]\n"
         "                        raw completion (--chat: TEXT as one user message through the chat\n"
         "                        template); --logits-out writes float32 logits of every prompt\n"
         "                        position; --json prints prompt and generated token ids");
}

#define MAX_DIM (1 << 24)

static int cmd_synth(int argc, char **argv) {
    veil_synth_opts o = veil_synth_tiny(VEIL_ARCH_QWEN2, VEIL_GGML_F32); /* --arch is required */
    const char *arch = NULL, *out = NULL, *preset = NULL, *type = NULL;
    int head_dim = 0;
    double rope = 0;
    struct {
        int *dest;
        int v;
    } dims[] = {{&o.dim, 0}, {&o.n_layers, 0}, {&o.n_heads, 0}, {&o.n_kv_heads, 0},
                {&o.ff, 0},  {&o.vocab, 0},    {&o.ctx, 0}};
    const cli_opt opts[] = {
        OPT_CHOICE("arch", &arch, "qwen2|qwen3|llama", "the architecture (required)"),
        OPT_STR("out", &out, "FILE", "where to write the GGUF file (required)"),
        OPT_CHOICE("preset", &preset, "tiny|0.5b|1.5b", "shapes of a known size (default tiny)"),
        OPT_CHOICE("type", &type, "f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q5_k|q6_k|q4_k_m", "the weights' type"),
        OPT_U64("seed", &o.seed, "N", "the weights' random seed"),
        OPT_INT("dim", &dims[0].v, 1, MAX_DIM, "N", "model width"),
        OPT_INT("layers", &dims[1].v, 1, MAX_DIM, "N", "layers"),
        OPT_INT("heads", &dims[2].v, 1, MAX_DIM, "N", "query heads"),
        OPT_INT("kv-heads", &dims[3].v, 1, MAX_DIM, "N", "key/value heads"),
        OPT_INT("head-dim", &head_dim, 1, MAX_DIM, "N", "a head's width (default dim / heads)"),
        OPT_INT("ff", &dims[4].v, 1, MAX_DIM, "N", "feed-forward width"),
        OPT_INT("vocab", &dims[5].v, 1, MAX_DIM, "N", "vocabulary size"),
        OPT_INT("ctx", &dims[6].v, 1, MAX_DIM, "N", "context length"),
        OPT_FLAG("spm", &o.spm, "a SentencePiece-style vocabulary (llama only)"),
        OPT_STR("name", &o.name, "NAME", "general.name"),
        OPT_DOUBLE("rope-scale", &rope, 1, 1000, "F", "linear RoPE scaling"),
    };
    const cli_spec spec = CLI_SPEC("veil model", "veil model synth --arch ARCH --out FILE [options]",
                                   "Writes a GGUF model with deterministic random weights, a BPE vocabulary\n"
                                   "(--spm: SentencePiece-style, llama only) and a chat template.",
                                   opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (!arch || !out || pos != argc)
        return cli_usage_error("veil model --help", "veil model synth needs --arch and --out");
    /* the preset first, then the type and each shape given on top of it */
    if (preset && !veil_synth_preset(&o, preset))
        return cli_usage_error("veil model --help", "--preset must be tiny, 0.5b or 1.5b");
    static const struct {
        const char *n;
        uint32_t t;
    } types[] = {{"f32", VEIL_GGML_F32},       {"f16", VEIL_GGML_F16},   {"bf16", VEIL_GGML_BF16},
                 {"q8_0", VEIL_GGML_Q8_0},     {"q4_0", VEIL_GGML_Q4_0}, {"q5_0", VEIL_GGML_Q5_0},
                 {"q4_k", VEIL_GGML_Q4_K},     {"q5_k", VEIL_GGML_Q5_K}, {"q6_k", VEIL_GGML_Q6_K},
                 {"q4_k_m", VEIL_SYNTH_Q4_K_M}};
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i].n))
            o.type = types[i].t;
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v)
            *dims[i].dest = dims[i].v;
    if (rope)
        o.rope_scale = (float)rope;
    o.arch = !strcmp(arch, "llama") ? VEIL_ARCH_LLAMA : !strcmp(arch, "qwen3") ? VEIL_ARCH_QWEN3 : VEIL_ARCH_QWEN2;
    o.head_dim = head_dim ? head_dim : o.dim / o.n_heads;
    veil_err err;
    if (veil_synth_write(&o, out, &err) != VEIL_OK)
        return cli_fail_err("synth", &err);
    return CLI_OK;
}

static int load(const char *path, veil_llm **m) {
    veil_err err;
    if (veil_llm_load(m, path, &err) != VEIL_OK)
        return cli_fail_err(path, &err);
    return CLI_OK;
}

static int cmd_info(int argc, char **argv) {
    int json = 0;
    const cli_opt opts[] = {OPT_FLAG("json", &json, "print as JSON")};
    const cli_spec spec = CLI_SPEC("veil model", "veil model info FILE [--json]",
                                   "Architecture, shapes, tokenizer, template and tensor types.", opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos + 1 != argc)
        return cli_usage_error("veil model --help", "veil model info needs a FILE");
    const char *path = argv[pos];
    veil_llm *m;
    if (load(path, &m) != CLI_OK)
        return CLI_FAIL;
    const veil_llm_info *in = veil_llm_get_info(m);
    const veil_gguf *g = veil_llm_gguf(m);
    static const char *const tok[] = {"bpe", "spm"}, *const tmpl[] = {"chatml", "llama-3", "llama-2"};
    json_t *types = json_object();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const char *tn = veil_ggml_type_name(g->tensors[i].type);
        json_object_set_new(types, tn, json_integer(json_integer_value(json_object_get(types, tn)) + 1));
    }
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:s, s:s, s:s, "
                          "s:s, s:I, s:I, s:i, s:o}",
                          "name", in->name, "architecture", in->arch_name, "dim", in->dim, "layers", in->n_layers,
                          "heads", in->n_heads, "kv_heads", in->n_kv_heads, "head_dim", in->head_dim, "ff", in->ff,
                          "vocab", in->vocab, "context_length", in->ctx, "gguf_version", (int)g->version, "rope_base",
                          (double)in->rope_base, "rope_scale", (double)in->rope_scale, "rms_eps", (double)in->eps,
                          "rope_layout", in->rope_neox ? "neox" : "normal", "tokenizer", tok[in->tok_kind],
                          "chat_template", tmpl[in->tmpl], "main_type", veil_ggml_type_name(in->main_type),
                          "weight_bytes_per_token", (json_int_t)in->weight_bytes, "file_bytes", (json_int_t)g->size,
                          "tensors", (int)g->n_tensors, "tensor_types", types);
    if (json) {
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
    } else {
        printf("%s: %s, %d layers, dim %d, %d heads (%d kv, head dim %d), ff %d, vocab %d, context %d\n", in->name,
               in->arch_name, in->n_layers, in->dim, in->n_heads, in->n_kv_heads, in->head_dim, in->ff, in->vocab,
               in->ctx);
        printf("  tokenizer %s, chat template %s, RoPE %s base %g scale %g, RMS eps %g\n", tok[in->tok_kind],
               tmpl[in->tmpl], in->rope_neox ? "neox" : "normal", (double)in->rope_base, (double)in->rope_scale,
               (double)in->eps);
        printf("  GGUF v%u, %llu tensors, %.1f MiB; main type %s; %.1f MiB of weights read per token\n", g->version,
               (unsigned long long)g->n_tensors, (double)g->size / 1048576, veil_ggml_type_name(in->main_type),
               (double)in->weight_bytes / 1048576);
    }
    json_decref(o);
    veil_llm_free(m);
    return CLI_OK;
}

static void print_tokens(const veil_tokens *t) {
    putchar('[');
    for (size_t i = 0; i < t->n; i++)
        printf("%s%d", i ? "," : "", t->ids[i]);
    putchar(']');
}

/* Tokenizes one text and prints it: ids, or {"ids":[…],"text":"decoded"}. */
static int tokenize_one(const veil_tokenizer *tok, const char *text, size_t len, int json) {
    veil_tokens t = {0};
    if (!veil_tokenize(tok, text, len, &t))
        return 0;
    if (!json) {
        print_tokens(&t);
        putchar('\n');
        veil_tokens_free(&t);
        return 1;
    }
    size_t cap = len * 4 + 64, n = 0;
    char *dec = malloc(cap);
    for (size_t i = 0; dec && i < t.n; i++) {
        size_t k = veil_token_bytes(tok, t.ids[i], dec + n, cap - n);
        n += k < cap - n ? k : cap - n;
    }
    json_t *o = json_object(), *ids = json_array();
    for (size_t i = 0; i < t.n; i++)
        json_array_append_new(ids, json_integer(t.ids[i]));
    json_object_set_new(o, "ids", ids);
    json_object_set_new(o, "text", dec ? json_stringn_nocheck(dec, n) : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s)
        puts(s);
    free(s);
    json_decref(o);
    free(dec);
    veil_tokens_free(&t);
    return 1;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *text = NULL;
    int lines = 0;
    const cli_opt opts[] = {
        OPT_STR("text", &text, "TEXT", "token ids of TEXT (no special tokens), one JSON array"),
        OPT_FLAG("json-lines", &lines,
                 "a JSON string per stdin line gives one line of\n{\"ids\":[...],\"text\":\"the ids decoded\"}"),
    };
    const cli_spec spec = CLI_SPEC("veil model", "veil model tokenize FILE (--text TEXT | --json-lines)", NULL, opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    const char *path = pos + 1 == argc ? argv[pos] : NULL;
    if (!path || !text == !lines)
        return cli_usage_error("veil model --help", "veil model tokenize needs FILE and --text or --json-lines");
    veil_llm *m;
    if (load(path, &m) != CLI_OK)
        return CLI_FAIL;
    const veil_tokenizer *tok = veil_llm_tokenizer(m);
    int ok = 1;
    if (text) {
        ok = tokenize_one(tok, text, strlen(text), 0);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (ok && (n = getline(&line, &cap, stdin)) > 0) {
            json_t *s = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            ok = json_is_string(s) && tokenize_one(tok, json_string_value(s), json_string_length(s), 1);
            if (!json_is_string(s))
                cli_fail("--json-lines: each line must be a JSON string");
            json_decref(s);
        }
        free(line);
        fflush(stdout);
    }
    veil_llm_free(m);
    return ok ? CLI_OK : CLI_FAIL;
}

static int parse_ids(const char *s, veil_tokens *t) {
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > (1 << 24) || !veil_tokens_push(t, (int32_t)v))
            return 0;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return 0;
    }
    return t->n > 0;
}

static int cmd_run(int argc, char **argv) {
    const char *prompt = NULL, *ids = NULL, *logits_out = NULL;
    int chat = 0, json = 0, n = 32;
    double temperature = 0;
    veil_sampling sp;
    veil_sampling_default(&sp);
    const cli_opt opts[] = {
        OPT_STR("prompt", &prompt, "TEXT", "the prompt as text"),
        OPT_STR("tokens", &ids, "1,2,3", "the prompt as token ids"),
        OPT_FLAG("chat", &chat, "TEXT as one user message through the chat template"),
        OPT_INT_ALIAS('n', "max-tokens", &n, 0, MAX_DIM, "N", "tokens to generate (default 32)"),
        OPT_DOUBLE("temperature", &temperature, 0, 100, "T", "sampling temperature (default 0: greedy)"),
        OPT_U64("seed", &sp.seed, "N", "the sampler's seed"),
        OPT_STR("logits-out", &logits_out, "FILE", "write float32 logits of every prompt position"),
        OPT_FLAG("json", &json, "print prompt and generated token ids"),
    };
    const cli_spec spec = CLI_SPEC("veil model", "veil model run FILE (--prompt TEXT | --tokens 1,2,3) [options]",
                                   "Raw completion with the built-in engine.", opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    sp.temperature = (float)temperature;
    if (pos + 1 != argc || (!prompt == !ids))
        return cli_usage_error("veil model --help", "veil model run needs FILE and one of --prompt or --tokens");
    veil_llm *m;
    if (load(argv[pos], &m) != CLI_OK)
        return CLI_FAIL;
    const veil_llm_info *in = veil_llm_get_info(m);
    const veil_tokenizer *tok = veil_llm_tokenizer(m);
    veil_tokens t = {0};
    int rc = CLI_FAIL;
    if (ids) {
        if (!parse_ids(ids, &t)) {
            rc = cli_usage_error("veil model --help", "--tokens takes comma-separated token ids");
            goto done;
        }
    } else if (chat) {
        veil_chat_msg msg = {"user", prompt};
        if (!veil_chat_tokens(m, &msg, 1, 0, &t))
            goto done;
    } else {
        if (veil_tokenizer_bos(tok) >= 0)
            veil_tokens_push(&t, veil_tokenizer_bos(tok));
        if (!veil_tokenize(tok, prompt, strlen(prompt), &t))
            goto done;
    }
    if (t.n + (size_t)n > (size_t)in->ctx) {
        rc = cli_fail("prompt and -n exceed the context of %d", in->ctx);
        goto done;
    }
    for (size_t i = 0; i < t.n; i++)
        if (t.ids[i] >= in->vocab) {
            rc = cli_fail("token %d is outside the vocabulary of %d", t.ids[i], in->vocab);
            goto done;
        }
    veil_llm_session *s = veil_llm_session_new(m, (int)t.n + n);
    veil_sampler *smp = veil_sampler_new(&sp, in->vocab);
    float *lg = malloc((size_t)in->vocab * sizeof *lg);
    FILE *lf = logits_out ? fopen(logits_out, "wb") : NULL;
    veil_tokens all = {0}, gen = {0};
    if (!s || !smp || !lg || (logits_out && !lf)) {
        rc = cli_fail(logits_out && !lf ? "cannot write --logits-out" : "out of memory");
        goto run_done;
    }
    float *every = lf ? malloc(t.n * (size_t)in->vocab * sizeof *every) : NULL;
    const float *out = (!lf || every) ? veil_llm_prefill(s, t.ids, t.n, 0, every) : NULL;
    for (size_t i = 0; i < t.n; i++)
        veil_tokens_push(&all, t.ids[i]);
    if (lf && every && out)
        fwrite(every, sizeof *every, t.n * (size_t)in->vocab, lf);
    free(every);
    for (int k = 0; k < n && out; k++) {
        memcpy(lg, out, (size_t)in->vocab * sizeof *lg);
        int32_t next = veil_sampler_pick(smp, lg, all.ids, all.n);
        veil_tokens_push(&gen, next);
        veil_tokens_push(&all, next);
        if (!json) {
            char piece[1100];
            size_t pl = veil_token_bytes(tok, next, piece, sizeof piece);
            fwrite(piece, 1, pl < sizeof piece ? pl : sizeof piece, stdout);
        }
        if (k + 1 < n)
            out = veil_llm_forward(s, next, (int)all.n - 1);
    }
    if (json) {
        printf("{\"prompt\":");
        print_tokens(&t);
        printf(",\"generated\":");
        print_tokens(&gen);
        printf("}\n");
    } else {
        putchar('\n');
    }
    rc = CLI_OK;
    if (lf && fclose(lf) != 0)
        rc = cli_fail("cannot write --logits-out");
    lf = NULL;
run_done:
    if (lf)
        fclose(lf);
    free(lg);
    veil_tokens_free(&all);
    veil_tokens_free(&gen);
    veil_sampler_free(smp);
    veil_llm_session_free(s);
done:
    veil_tokens_free(&t);
    veil_llm_free(m);
    return rc;
}

int cmd_model(int argc, char **argv) {
    static const cli_command cmds[] = {
        {"synth", "write a synthesized GGUF model", cmd_synth},
        {"info", "describe a GGUF model", cmd_info},
        {"tokenize", "token ids of a text", cmd_tokenize},
        {"run", "raw completion and logits", cmd_run},
    };
    return cli_dispatch("veil model", cmds, sizeof cmds / sizeof cmds[0], argc, argv, help);
}
