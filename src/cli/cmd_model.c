/* veil model: synthesize GGUF models, inspect them, tokenize text and run
 * the engine by hand (raw completion, logits for cross-checks). */
#include <getopt.h>
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

static int parse_type(const char *s, uint32_t *t) {
    static const struct { const char *n; uint32_t t; } types[] = {
        {"f32", VEIL_GGML_F32},   {"f16", VEIL_GGML_F16},   {"bf16", VEIL_GGML_BF16}, {"q8_0", VEIL_GGML_Q8_0},
        {"q4_0", VEIL_GGML_Q4_0}, {"q5_0", VEIL_GGML_Q5_0}, {"q4_k", VEIL_GGML_Q4_K}, {"q5_k", VEIL_GGML_Q5_K},
        {"q6_k", VEIL_GGML_Q6_K}, {"q4_k_m", VEIL_SYNTH_Q4_K_M}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(s, types[i].n)) return *t = types[i].t, 1;
    return 0;
}

static int positive(const char *s, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x <= 0 || x > (1 << 24)) return 0;
    *v = (int)x;
    return 1;
}

static int cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {
        {"arch", required_argument, NULL, 'a'},   {"out", required_argument, NULL, 'o'},
        {"preset", required_argument, NULL, 'p'}, {"type", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 's'},   {"dim", required_argument, NULL, 'd'},
        {"layers", required_argument, NULL, 'l'}, {"heads", required_argument, NULL, 'H'},
        {"kv-heads", required_argument, NULL, 'k'}, {"head-dim", required_argument, NULL, 'D'},
        {"ff", required_argument, NULL, 'f'},     {"vocab", required_argument, NULL, 'v'},
        {"ctx", required_argument, NULL, 'c'},    {"spm", no_argument, NULL, 'S'},
        {"name", required_argument, NULL, 'n'},   {"rope-scale", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    veil_synth_opts o = veil_synth_tiny(VEIL_ARCH_QWEN2, VEIL_GGML_F32); /* --arch is required */
    const char *arch = NULL, *out = NULL;
    int c, hd_set = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'a': arch = optarg; break;
        case 'o': out = optarg; break;
        case 'p':
            if (!veil_synth_preset(&o, optarg))
                return cli_usage_error("veil model --help", "--preset must be tiny, 0.5b or 1.5b");
            break;
        case 't':
            if (!parse_type(optarg, &o.type))
                return cli_usage_error("veil model --help",
                                       "--type must be f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q5_k, q6_k or q4_k_m");
            break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'd': bad = !positive(optarg, &o.dim); break;
        case 'l': bad = !positive(optarg, &o.n_layers); break;
        case 'H': bad = !positive(optarg, &o.n_heads); break;
        case 'k': bad = !positive(optarg, &o.n_kv_heads); break;
        case 'D': bad = !positive(optarg, &o.head_dim), hd_set = 1; break;
        case 'f': bad = !positive(optarg, &o.ff); break;
        case 'v': bad = !positive(optarg, &o.vocab); break;
        case 'c': bad = !positive(optarg, &o.ctx); break;
        case 'S': o.spm = 1; break;
        case 'n': o.name = optarg; break;
        case 'R':
            o.rope_scale = strtof(optarg, NULL);
            bad = !(o.rope_scale >= 1.0f && o.rope_scale <= 1000.0f);
            break;
        case 'h': help(); return CLI_OK;
        default: return cli_usage_error("veil model --help", "bad option '%s' for 'veil model synth'", argv[optind - 1]);
        }
        if (bad) return cli_usage_error("veil model --help", "%s takes a positive number", argv[optind - 2]);
    }
    if (!arch || !out) return cli_usage_error("veil model --help", "veil model synth needs --arch and --out");
    if (!strcmp(arch, "llama")) o.arch = VEIL_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) o.arch = VEIL_ARCH_QWEN2;
    else if (!strcmp(arch, "qwen3")) o.arch = VEIL_ARCH_QWEN3;
    else return cli_usage_error("veil model --help", "--arch must be qwen2, qwen3 or llama");
    if (!hd_set) o.head_dim = o.dim / o.n_heads;
    veil_err err;
    if (veil_synth_write(&o, out, &err) != VEIL_OK) return cli_fail_err("synth", &err);
    return CLI_OK;
}

static int load(const char *path, veil_llm **m) {
    veil_err err;
    if (veil_llm_load(m, path, &err) != VEIL_OK) return cli_fail_err(path, &err);
    return CLI_OK;
}

static int cmd_info(int argc, char **argv) {
    int json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return help(), CLI_OK;
        else if (!path && argv[i][0] != '-') path = argv[i];
        else return cli_usage_error("veil model --help", "bad argument '%s' for 'veil model info'", argv[i]);
    }
    if (!path) return cli_usage_error("veil model --help", "veil model info needs a FILE");
    veil_llm *m;
    if (load(path, &m) != CLI_OK) return CLI_FAIL;
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
                          "vocab", in->vocab, "context_length", in->ctx, "gguf_version", (int)g->version,
                          "rope_base", (double)in->rope_base, "rope_scale", (double)in->rope_scale, "rms_eps",
                          (double)in->eps, "rope_layout", in->rope_neox ? "neox" : "normal", "tokenizer",
                          tok[in->tok_kind], "chat_template", tmpl[in->tmpl], "main_type",
                          veil_ggml_type_name(in->main_type), "weight_bytes_per_token", (json_int_t)in->weight_bytes,
                          "file_bytes", (json_int_t)g->size, "tensors", (int)g->n_tensors, "tensor_types", types);
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
    for (size_t i = 0; i < t->n; i++) printf("%s%d", i ? "," : "", t->ids[i]);
    putchar(']');
}

/* Tokenizes one text and prints it: ids, or {"ids":[…],"text":"decoded"}. */
static int tokenize_one(const veil_tokenizer *tok, const char *text, size_t len, int json) {
    veil_tokens t = {0};
    if (!veil_tokenize(tok, text, len, &t)) return 0;
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
    for (size_t i = 0; i < t.n; i++) json_array_append_new(ids, json_integer(t.ids[i]));
    json_object_set_new(o, "ids", ids);
    json_object_set_new(o, "text", dec ? json_stringn_nocheck(dec, n) : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) puts(s);
    free(s);
    json_decref(o);
    free(dec);
    veil_tokens_free(&t);
    return 1;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL;
    int lines = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--json-lines")) lines = 1;
        else if (!path && argv[i][0] != '-') path = argv[i];
        else return cli_usage_error("veil model --help", "bad argument '%s' for 'veil model tokenize'", argv[i]);
    }
    if (!path || !text == !lines)
        return cli_usage_error("veil model --help", "veil model tokenize needs FILE and --text or --json-lines");
    veil_llm *m;
    if (load(path, &m) != CLI_OK) return CLI_FAIL;
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
            if (!json_is_string(s)) cli_fail("--json-lines: each line must be a JSON string");
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
        if (end == s || v < 0 || v > (1 << 24) || !veil_tokens_push(t, (int32_t)v)) return 0;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return t->n > 0;
}

static int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {
        {"prompt", required_argument, NULL, 'p'}, {"tokens", required_argument, NULL, 'T'},
        {"chat", no_argument, NULL, 'c'},         {"temperature", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 's'},   {"logits-out", required_argument, NULL, 'L'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *prompt = NULL, *ids = NULL, *logits_out = NULL;
    int chat = 0, json = 0, n = 32;
    veil_sampling sp;
    veil_sampling_default(&sp);
    sp.temperature = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'T': ids = optarg; break;
        case 'c': chat = 1; break;
        case 't': sp.temperature = strtof(optarg, NULL); break;
        case 's': sp.seed = strtoull(optarg, NULL, 10); break;
        case 'L': logits_out = optarg; break;
        case 'j': json = 1; break;
        case 'n':
            if (!positive(optarg, &n) && strcmp(optarg, "0") != 0)
                return cli_usage_error("veil model --help", "-n takes a count");
            if (!strcmp(optarg, "0")) n = 0;
            break;
        case 'h': help(); return CLI_OK;
        default: return cli_usage_error("veil model --help", "bad option '%s' for 'veil model run'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc || (!prompt == !ids))
        return cli_usage_error("veil model --help", "veil model run needs FILE and one of --prompt or --tokens");
    veil_llm *m;
    if (load(argv[optind], &m) != CLI_OK) return CLI_FAIL;
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
        if (!veil_chat_tokens(m, &msg, 1, 0, &t)) goto done;
    } else {
        if (veil_tokenizer_bos(tok) >= 0) veil_tokens_push(&t, veil_tokenizer_bos(tok));
        if (!veil_tokenize(tok, prompt, strlen(prompt), &t)) goto done;
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
    for (size_t i = 0; i < t.n; i++) veil_tokens_push(&all, t.ids[i]);
    if (lf && every && out) fwrite(every, sizeof *every, t.n * (size_t)in->vocab, lf);
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
        if (k + 1 < n) out = veil_llm_forward(s, next, (int)all.n - 1);
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
    if (lf && fclose(lf) != 0) rc = cli_fail("cannot write --logits-out");
    lf = NULL;
run_done:
    if (lf) fclose(lf);
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
