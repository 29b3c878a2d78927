/* veil serve: the OpenAI/Venice-compatible inference server; and veil keys,
 * which manages its API key store. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../server/keyrelease.h"
#include "../server/server.h"
#include "../server/tee.h"
#include "cli.h"
#include "veil/engine.h"
#include "veil/hex.h"
#include "veil/secure.h"

#define MAX_MODELS 32

typedef struct serve_state {
    veil_model models[MAX_MODELS];
    size_t n_models;
    cli_list keys;         /* --api-key */
    const char *shown_key; /* a key to print in the banner's examples */
    veil_tee *tee;
    const char *state_dir;
    veil_llm *llms[MAX_MODELS]; /* models the built-in engine loaded */
    char gpu_desc[640];         /* GPU evidence, for the banner; "" without a GPU */
    size_t n_llms;
    const veil_tls_identity *tls; /* NULL: plain HTTP */
    veil_kv_cache *kv_cache;      /* the engine's prefix cache, shared by its models; NULL: off */
    const char *store;            /* --store: a redis:// URL, or NULL for SQLite under the state directory */
    const char *key_from;         /* --key-from: where the instance key came from, or NULL (made here) */
    int key_release;              /* --key-release: served to peers */
} serve_state;

/* Loads a GGUF model for the built-in engine and adds it as `id` (NULL: its
 * general.name, lower-cased, spaces as dashes). Engine models run inside
 * the TEE itself, so they are TEE and E2EE capable whenever a TEE is on. */
static int add_engine_model(serve_state *st, const char *path, const char *id) {
    if (st->n_models == MAX_MODELS)
        return cli_usage_error("veil serve --help", "at most %d models", MAX_MODELS);
    veil_llm *llm;
    veil_err err;
    if (veil_llm_load(&llm, path, &err) != VEIL_OK)
        return cli_fail_err(path, &err);
    st->llms[st->n_llms++] = llm;
    const veil_llm_info *in = veil_llm_get_info(llm);
    veil_model *m = &st->models[st->n_models++];
    m->id = strdup(id ? id : in->name);
    for (char *p = m->id; !id && p && *p; p++)
        *p = *p == ' ' ? '-' : (char)tolower((unsigned char)*p);
    char desc[300];
    snprintf(desc, sizeof desc, "%s (%s, %d layers, %s) on veil's built-in engine", in->name, in->arch_name,
             in->n_layers, veil_ggml_type_name(in->main_type));
    m->description = strdup(desc);
    m->tee = m->e2ee = 1;
    m->reasoning = in->arch == VEIL_ARCH_QWEN3;
    m->context_length = in->ctx;
    m->max_completion_tokens = in->ctx < 4096 ? in->ctx : 4096;
    m->backend = veil_engine_backend_new(llm, st->kv_cache);
    return m->id && m->description && m->backend ? CLI_OK : cli_fail("out of memory");
}

/* The default model: veil-tiny, synthesized once into STATE/models/. */
static int add_default_model(serve_state *st) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/models", st->state_dir);
    snprintf(path, sizeof path, "%s/veil-tiny.gguf", dir);
    if (access(path, R_OK) != 0) {
        cli_mkdir_p(dir);
        veil_synth_opts o = veil_synth_tiny(VEIL_ARCH_QWEN2, VEIL_GGML_F32);
        o.seed = 1;
        o.name = "veil-tiny";
        veil_err err;
        if (veil_synth_write(&o, path, &err) != VEIL_OK)
            return cli_fail_err("veil-tiny", &err);
        printf("veil serve: made the built-in model veil-tiny (random weights, for protocol testing) at %s\n", path);
    }
    return add_engine_model(st, path, "veil-tiny");
}

static void on_ready(void *ctx, const char *host, int port) {
    serve_state *st = ctx;
    const char *h = strchr(host, ':') ? "[::1]" : (!strcmp(host, "0.0.0.0") ? "127.0.0.1" : host);
    const char *scheme = st->tls ? "https" : "http";
    printf("veil serve: listening on %s://%s:%d/api/v1\n", scheme, h, port);
    printf("  models: ");
    for (size_t i = 0; i < st->n_models; i++)
        printf("%s%s (%s)", i ? ", " : "", st->models[i].id, st->models[i].backend ? st->models[i].backend->name : "?");
    if (!st->tee)
        printf("\n  TEE: none (--tee none): no attestation\n");
    else if (veil_tee_simulated(st->tee))
        printf("\n  TEE: SIMULATED (veil-simulated). THIS IS NOT A TEE: quotes are signed by a simulation root\n"
               "       that clients refuse unless told to accept simulation. Signing address %s\n",
               veil_tee_address(st->tee));
    else
        printf("\n  TEE: %s, signing address %s\n", veil_tee_provider_name(st->tee), veil_tee_address(st->tee));
    if (st->tee)
        printf("  GPU evidence: %s\n", st->gpu_desc[0] ? st->gpu_desc : "none");
    if (st->tee && st->key_from)
        printf("  instance key: %s\n", !strcmp(st->key_from, "dstack")
                                           ? "from dstack's key service (the same for every replica of this app)"
                                           : "released by a replica that attested the same code (--key-from)");
    if (st->tee && st->key_release)
        printf("  key release: served at %s to replicas whose quotes measure this code\n", VEIL_KEY_RELEASE_PATH);
    if (st->tee)
        printf("  every completed response is signed; GET /api/v1/tee/signature?request_id=… returns it\n");
    if (st->tls) {
        char spki[65];
        veil_hex_encode(spki, st->tls->spki_sha256, 32);
        printf("  TLS: %s, SPKI SHA-256 %s%s\n",
               st->tls->enclave ? "key made in memory here (never written), self-signed certificate"
                                : "the operator's certificate and key",
               spki, st->tee ? ", bound to every attestation" : "");
    }
    printf("  state: %s%s%s\n", st->state_dir, st->store ? "; keys, signatures and rate limits in " : "",
           st->store ? st->store : "");
    const char *key = st->shown_key ? st->shown_key : "$VEIL_API_KEY";
    int self_signed = st->tls && st->tls->enclave;
    printf("  try: curl -s%s %s://%s:%d/api/v1/chat/completions -H 'Authorization: Bearer %s' "
           "-H 'Content-Type: application/json' -d "
           "'{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n",
           self_signed ? "k" : "", scheme, h, port, key, st->n_models ? st->models[0].id : "MODEL");
    printf("  or:  %s chat --base-url %s://%s:%d/api/v1 --api-key %s --model %s%s%s 'Hello'\n", cli_program(), scheme,
           h, port, key, st->n_models ? st->models[0].id : "MODEL",
           st->tee && veil_tee_simulated(st->tee) ? " --allow-simulated" : "", self_signed ? " --tls-attested" : "");
    fflush(stdout);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Models from a --config file: {"models":[{id, upstream, upstream_model,
 * upstream_key, tee, e2ee, context_length, max_completion_tokens,
 * upstream_timeout, description, system_prompt, pricing:{input_usd, output_usd},
 * capabilities:{function_calling, response_schema, logprobs, reasoning, vision}}]} */
static int load_config(serve_state *st, const char *path, long timeout) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    json_t *models = json_object_get(root, "models");
    if (!json_is_array(models)) {
        json_decref(root);
        return cli_usage_error("veil serve --help", "%s: needs {\"models\": [...]} (%s)", path, jerr.text);
    }
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        if (st->n_models == MAX_MODELS)
            break;
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *up = json_string_value(json_object_get(m, "upstream"));
        const char *gguf = json_string_value(json_object_get(m, "model"));
        if (!id || !up == !gguf) {
            json_decref(root);
            return cli_usage_error("veil serve --help",
                                   "%s: model %zu needs an id and either an upstream URL or a GGUF model file", path,
                                   i);
        }
        if (gguf) {
            int rc = add_engine_model(st, gguf, id);
            if (rc != CLI_OK) {
                json_decref(root);
                return rc;
            }
            continue;
        }
        veil_model *vm = &st->models[st->n_models++];
        vm->id = strdup(id);
        vm->description = dup_or_null(json_string_value(json_object_get(m, "description")));
        vm->system_prompt = dup_or_null(json_string_value(json_object_get(m, "system_prompt")));
        vm->upstream_model = dup_or_null(json_string_value(json_object_get(m, "upstream_model")));
        vm->tee = json_is_true(json_object_get(m, "tee"));
        vm->e2ee = json_is_true(json_object_get(m, "e2ee"));
        json_t *caps = json_object_get(m, "capabilities");
        vm->function_calling = json_is_true(json_object_get(caps, "function_calling"));
        vm->response_schema = json_is_true(json_object_get(caps, "response_schema"));
        vm->logprobs = json_is_true(json_object_get(caps, "logprobs"));
        vm->reasoning = json_is_true(json_object_get(caps, "reasoning"));
        vm->vision = json_is_true(json_object_get(caps, "vision"));
        json_t *cl = json_object_get(m, "context_length"), *mct = json_object_get(m, "max_completion_tokens");
        vm->context_length = json_is_integer(cl) ? (long)json_integer_value(cl) : 32768;
        vm->max_completion_tokens = json_is_integer(mct) ? (long)json_integer_value(mct) : 4096;
        json_t *pr = json_object_get(m, "pricing");
        vm->price_in_usd = json_number_value(json_object_get(pr, "input_usd"));
        vm->price_out_usd = json_number_value(json_object_get(pr, "output_usd"));
        json_t *to = json_object_get(m, "upstream_timeout");
        vm->backend = veil_upstream_backend_new(up, json_string_value(json_object_get(m, "upstream_key")),
                                                json_is_integer(to) ? (long)json_integer_value(to) : timeout);
    }
    json_decref(root);
    return CLI_OK;
}

/* The GPU evidence provider of --gpu: NVML, the simulated GPU, or none. */
static int open_gpu(serve_state *st, const char *name) {
    veil_gpu_provider *gpu = NULL;
    veil_err err;
    char info[600] = "";
    if (!strcmp(name, "none"))
        return CLI_OK;
    if (strcmp(name, "sim") != 0) {
        if (veil_gpu_nvml_open(&gpu, info, sizeof info, &err) != VEIL_OK) {
            if (!strcmp(name, "nvml"))
                return cli_fail_err("--gpu nvml", &err);
            gpu = NULL;
        }
    }
    if (!gpu && (!strcmp(name, "sim") || veil_tee_simulated(st->tee))) {
        if (veil_gpu_sim_open(&gpu, st->state_dir, &err) != VEIL_OK)
            return cli_fail_err("simulated GPU", &err);
    }
    if (gpu) {
        snprintf(st->gpu_desc, sizeof st->gpu_desc, "%s",
                 veil_gpu_provider_simulated(gpu) ? "SIMULATED (its own root, not NVIDIA's)" : info);
        veil_tee_set_gpu(st->tee, gpu);
    }
    return CLI_OK;
}

/* Where a store lives: the --store URL (Redis, shared by replicas), else `file` in the state
 * directory (SQLite). */
static void store_path(char out[4200], const char *store, const char *state_dir, const char *file) {
    if (store)
        snprintf(out, 4200, "%s", store);
    else
        snprintf(out, 4200, "%s/%s", state_dir, file);
}

static void free_models(serve_state *st) {
    for (size_t i = 0; i < st->n_models; i++) {
        veil_model *m = &st->models[i];
        if (m->backend)
            m->backend->free(m->backend);
        free(m->id);
        free(m->description);
        free(m->system_prompt);
        free(m->upstream_model);
    }
    /* the cache after the backends, which borrow it, and before the models its entries belong to */
    veil_kv_cache_free(st->kv_cache); /* wiped */
    st->kv_cache = NULL;
    for (size_t i = 0; i < st->n_llms; i++)
        veil_llm_free(st->llms[i]);
    st->n_models = st->n_llms = 0;
}

int cmd_serve(int argc, char **argv) {
    /* jansson holds decrypted prompts and answers: every block it frees is wiped first */
    json_set_alloc_funcs(malloc, veil_free_wiped);
    serve_state st;
    memset(&st, 0, sizeof st);
    veil_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *upstream = NULL, *up_model = NULL, *up_key = NULL, *model_id = NULL, *config = NULL, *tee_name = "auto",
               *model_file = NULL, *gpu_name = "auto";
    long port = 8080, timeout = 60, retention = 3600, max_body = 4 << 20, rate = 10, sig_rate = 120, hops = 0,
         max_streams = 256, header_timeout = 10, body_timeout = 30, kv_mib = 256;
    int trust_proxy = 0, tls_on = 0, peer_sim = 0;
    const char *tls_cert = NULL, *tls_key = NULL, *peer_policy = NULL, *peer_collateral = NULL, *dstack_socket = NULL;
    veil_peer_policy peer;
    memset(&peer, 0, sizeof peer);
    const cli_opt opts[] = {
        OPT_STR("host", &cfg.host, "HOST", "address to listen on (default 127.0.0.1)"),
        OPT_LONG("port", &port, 0, 65535, "PORT", "port (default 8080; 0 picks a free one)"),
        OPT_FLAG("tls", &tls_on,
                 "serve HTTPS with a key made in memory (never written) and a self-signed certificate, "
                 "bound to the attestation"),
        OPT_STR("tls-cert", &tls_cert, "FILE", "serve HTTPS with this PEM certificate chain (with --tls-key)"),
        OPT_STR("tls-key", &tls_key, "FILE", "the PEM private key of --tls-cert"),
        OPT_STR("state", &st.state_dir, "DIR",
                "state directory: API key store (default $VEIL_STATE_DIR,\n"
                "else $XDG_STATE_HOME/veil, else ~/.local/state/veil)"),
        OPT_LIST("api-key", &st.keys, "KEY",
                 "accept this bearer key (repeatable); without any, the key\n"
                 "store is used, and a first key is made and shown once"),
        OPT_STR("upstream", &upstream, "URL",
                "an OpenAI-compatible server to serve from, e.g.\n"
                "http://127.0.0.1:8000/v1 (vLLM, llama.cpp, SGLang, Ollama)"),
        OPT_STR("upstream-model", &up_model, "NAME", "the model name the upstream knows"),
        OPT_STR("upstream-key", &up_key, "KEY", "bearer key for the upstream"),
        OPT_LONG("upstream-timeout", &timeout, 1, 86400, "S", "seconds of upstream silence before 504 (default 60)"),
        OPT_STR("model", &model_file, "FILE.gguf", "serve a GGUF model with the built-in engine"),
        OPT_LONG("kv-cache-mib", &kv_mib, 0, 1L << 20, "MIB",
                 "the engine keeps finished chats' KV state up to this much memory, reused per API key by "
                 "the next turn (default 256; 0: off)"),
        OPT_STR("model-id", &model_id, "ID",
                "the id clients use (default: the upstream model name, or the\n"
                "GGUF file's general.name)"),
        OPT_STR("config", &config, "FILE",
                "models from a JSON file (see docs/serve.md)\n"
                "With no --model, --upstream or --config: the built-in tiny model\n"
                "veil-tiny (random weights, for protocol testing), made on first\n"
                "start in STATE/models/"),
        OPT_LONG("max-body", &max_body, 1, LONG_MAX, "BYTES", "request body limit (default 4194304)"),
        OPT_STR("cors", &cfg.cors_origin, "ORIGIN", "send CORS headers for this origin ('*' for any)"),
        OPT_CHOICE("tee", &tee_name, "auto|tdx|dstack|sim|none",
                   "where quotes come from (default auto: configfs-tsm, else the\n"
                   "dstack socket, else a SIMULATED TEE, announced as such)"),
        OPT_CHOICE("gpu", &gpu_name, "auto|nvml|sim|none",
                   "where GPU evidence (nvidia_payload) comes from (default auto:\n"
                   "NVML when a GPU in confidential-computing mode answers, else the\n"
                   "simulated GPU under a simulated TEE, else none)"),
        OPT_LONG("tee-rate-limit", &rate, 1, 1000000, "N", "attestation requests per client IP a minute (default 10)"),
        OPT_LONG("signature-rate-limit", &sig_rate, 1, 1000000, "N",
                 "signature lookups per client IP a minute (default 120)"),
        OPT_FLAG("trust-proxy", &trust_proxy,
                 "behind one proxy: the client IP is the rightmost X-Forwarded-For\n"
                 "entry, the one the proxy added"),
        OPT_LONG("trusted-hops", &hops, 1, 16, "N",
                 "behind N proxies: the client IP is the Nth X-Forwarded-For entry\n"
                 "from the right (implies --trust-proxy)"),
        OPT_LONG("header-timeout", &header_timeout, 1, 3600, "S",
                 "a request head must arrive whole within S seconds of its first byte\n(default 10)"),
        OPT_LONG("body-timeout", &body_timeout, 1, 3600, "S",
                 "a request body may pause at most S seconds between bytes (default 30)"),
        OPT_LONG("max-streams", &max_streams, 1, 100000, "N",
                 "generations at once (default 256); more get 503 with Retry-After"),
        OPT_LONG("signature-retention", &retention, 1, LONG_MAX, "S",
                 "keep response signatures this long (default 3600)"),
        OPT_STR("store", &st.store, "URL",
                "keep API keys, signatures and rate-limit counters in Redis,\n"
                "shared by replicas: redis://HOST:PORT[/DB] (default: SQLite\n"
                "under the state directory; AUTH with $VEIL_REDIS_PASSWORD)"),
        OPT_STR("key-from", &st.key_from, "URL|dstack",
                "take the instance key from a running replica by mutual\n"
                "attestation (its base URL), or from dstack's key service\n"
                "(docs/cluster.md)"),
        OPT_FLAG("key-release", &st.key_release,
                 "release the instance key to replicas whose quotes measure the\n"
                 "same code (POST /veil/v1/key-release)"),
        OPT_STR("peer-policy", &peer_policy, "FILE",
                "what a peer's quote must satisfy (a policy as veil attest's;\n"
                "a measurement it pins replaces equality with this replica's)"),
        OPT_STR("peer-collateral", &peer_collateral, "FILE", "collateral for hardware peers' quotes"),
        OPT_STR("peer-pcs-url", &peer.pcs_url, "URL", "fetch hardware peers' collateral from this PCS/PCCS"),
        OPT_FLAG("peer-allow-simulated", &peer_sim,
                 "key release between SIMULATED replicas (their shared simulation root)"),
        OPT_STR("dstack-socket", &dstack_socket, "PATH", "the dstack guest agent (default /var/run/dstack.sock)"),
    };
    const cli_spec spec = CLI_SPEC("veil serve", "veil serve [options]",
                                   "Serves the OpenAI-compatible API under /api/v1 (Venice) and /v1.\n"
                                   "SIGINT or SIGTERM stops accepting, lets streams finish (10 s), then exits.",
                                   opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    if (pos != argc)
        return cli_usage_error("veil serve --help", "'veil serve' takes no arguments");
    cfg.port = (int)port;
    cfg.max_body = (size_t)max_body;
    cfg.tee_rate_per_min = (int)rate;
    cfg.sig_rate_per_min = (int)sig_rate;
    cfg.trust_proxy = hops ? (int)hops : trust_proxy;
    cfg.max_streams = (int)max_streams;
    cfg.header_timeout_s = (int)header_timeout;
    cfg.body_timeout_s = (int)body_timeout;
    if (!st.state_dir)
        st.state_dir = cli_state_dir();
    if (!st.state_dir)
        return cli_fail("no state directory: pass --state DIR or set VEIL_STATE_DIR or HOME");
    if (cli_mkdir_p(st.state_dir) != 0)
        return cli_fail("cannot make the state directory %s", st.state_dir);
    if (kv_mib > 0 && !(st.kv_cache = veil_kv_cache_new((size_t)kv_mib << 20)))
        return cli_fail("out of memory");
    if (config) {
        int rc = load_config(&st, config, timeout);
        if (rc != CLI_OK)
            return rc;
    }
    if (upstream && st.n_models < MAX_MODELS) {
        veil_model *m = &st.models[st.n_models++];
        m->id = strdup(model_id ? model_id : up_model ? up_model : "veil-upstream");
        /* Venice's naming: tee-<name> and e2ee-<name> are TEE models */
        m->e2ee = !strncmp(m->id, "e2ee-", 5);
        m->tee = m->e2ee || !strncmp(m->id, "tee-", 4);
        m->upstream_model = dup_or_null(up_model);
        m->description = strdup("served from an OpenAI-compatible upstream");
        m->context_length = 32768;
        m->max_completion_tokens = 4096;
        m->backend = veil_upstream_backend_new(upstream, up_key, timeout);
    }
    int mrc = CLI_OK;
    if (model_file)
        mrc = add_engine_model(&st, model_file, upstream ? NULL : model_id);
    else if (st.n_models == 0)
        mrc = add_default_model(&st);
    if (mrc != CLI_OK) {
        free_models(&st);
        return mrc;
    }
    veil_tee_kind kind = VEIL_TEE_AUTO;
    if (!strcmp(tee_name, "tdx"))
        kind = VEIL_TEE_TDX;
    else if (!strcmp(tee_name, "dstack"))
        kind = VEIL_TEE_DSTACK;
    else if (!strcmp(tee_name, "sim"))
        kind = VEIL_TEE_SIM;
    for (size_t i = 0; i < st.n_models; i++)
        st.models[i].tee |= st.models[i].e2ee; /* E2EE implies TEE */

    veil_tee *tee = NULL;
    veil_sigstore *sigstore = NULL;
    veil_err err;
    veil_quote_policy peer_pol;
    veil_collateral *peer_col = NULL;
    int prc2 = CLI_OK;
    if ((st.key_from || st.key_release) && !strcmp(tee_name, "none"))
        prc2 = cli_usage_error("veil serve --help", "--key-from and --key-release need a TEE (not --tee none)");
    if (prc2 == CLI_OK && st.store && !veil_store_is_redis(st.store))
        prc2 = cli_usage_error("veil serve --help", "--store takes a redis://HOST:PORT[/DB] URL");
    if (prc2 == CLI_OK && peer_policy &&
        (prc2 = cli_load_policy(peer_policy, &peer_pol, "veil serve --help")) == CLI_OK)
        peer.policy = &peer_pol;
    if (prc2 == CLI_OK && peer_collateral &&
        (prc2 = cli_load_collateral(peer_collateral, &peer_col, "veil serve --help")) == CLI_OK)
        peer.collateral = peer_col;
    peer.allow_simulated = peer_sim;
    if (prc2 != CLI_OK) {
        veil_collateral_free(peer_col);
        free_models(&st);
        return prc2;
    }
    if (strcmp(tee_name, "none") != 0) {
        veil_provider_config pc = {NULL, dstack_socket, st.state_dir, NULL};
        if (veil_tee_open(&tee, kind, &pc, "0.1.0", st.key_from != NULL, &err) != VEIL_OK) {
            veil_collateral_free(peer_col);
            free_models(&st);
            return cli_fail_err("TEE", &err);
        }
        veil_rc krc = VEIL_OK;
        if (st.key_from && !strcmp(st.key_from, "dstack"))
            krc = veil_key_from_dstack(tee, dstack_socket, &err);
        else if (st.key_from)
            krc = veil_key_fetch(tee, st.key_from, &peer, 60, &err);
        if (krc != VEIL_OK) {
            veil_tee_free(tee);
            veil_collateral_free(peer_col);
            free_models(&st);
            return cli_fail_err("--key-from", &err);
        }
        if (st.key_release)
            cfg.key_release = &peer;
        st.tee = tee;
        if (open_gpu(&st, gpu_name) != CLI_OK) {
            veil_tee_free(tee);
            free_models(&st);
            return CLI_FAIL;
        }
        char sigdb[4200];
        store_path(sigdb, st.store, st.state_dir, "signatures.db");
        if (veil_sigstore_open(&sigstore, sigdb, retention, &err) != VEIL_OK) {
            veil_tee_free(tee);
            return cli_fail_err("signatures", &err);
        }
        cfg.sigstore = sigstore;
    } else {
        for (size_t i = 0; i < st.n_models; i++)
            st.models[i].tee = st.models[i].e2ee = 0;
    }
    cfg.tee = tee;
    veil_tls_identity tls;
    memset(&tls, 0, sizeof tls);
    if (tls_on || tls_cert || tls_key) {
        if (tls_on && (tls_cert || tls_key)) {
            veil_tee_free(tee);
            veil_sigstore_close(sigstore);
            free_models(&st);
            return cli_usage_error("veil serve --help", "--tls makes its own key: give it, or --tls-cert/--tls-key");
        }
        if (veil_tls_open(&tls, tls_cert, tls_key, cfg.host, &err) != VEIL_OK ||
            (tee && veil_tee_bind_tls(tee, tls.spki_sha256, tls.enclave, &err) != VEIL_OK)) {
            veil_tls_close(&tls);
            veil_tee_free(tee);
            veil_sigstore_close(sigstore);
            free_models(&st);
            return cli_fail_err("TLS", &err);
        }
        cfg.tls = st.tls = &tls;
    }
    char db[4200];
    store_path(db, st.store, st.state_dir, "keys.db");
    veil_keystore *ks = NULL;
    veil_redis *rate_store = NULL;
    if (st.store && veil_redis_open(&rate_store, st.store, 100, &err) != VEIL_OK)
        return cli_fail_err("--store", &err);
    cfg.rate_store = rate_store;
    char *created = NULL;
    if (st.keys.n == 0) {
        if (veil_keystore_open(&ks, db, &err) != VEIL_OK)
            return cli_fail_err("API keys", &err);
        char id[17];
        int active = veil_keystore_list(ks, NULL, NULL);
        if (active < 0 && st.store)
            fprintf(stderr,
                    "veil serve: warning: the key store at %s cannot be read now; serving with the keys it "
                    "gives once it answers\n",
                    st.store);
        if (active == 0) {
            if (veil_keystore_create(ks, &created, id, &err) != VEIL_OK)
                return cli_fail_err("API keys", &err);
            printf("veil serve: no API key yet; created one (id %s). It is shown only now:\n  %s\n", id, created);
            st.shown_key = created;
        }
    } else {
        st.shown_key = st.keys.v[0];
    }
    cfg.models = st.models;
    cfg.n_models = st.n_models;
    cfg.api_keys = st.keys.v;
    cfg.n_api_keys = st.keys.n;
    cfg.keystore = ks;
    cfg.on_ready = on_ready;
    cfg.ready_ctx = &st;
    int rc = veil_server_run(&cfg, &err) == VEIL_OK ? CLI_OK : cli_fail_err("serve", &err);
    veil_keystore_close(ks);
    veil_redis_close(rate_store);
    veil_collateral_free(peer_col);
    veil_tls_close(&tls);
    veil_tee_free(tee);
    veil_sigstore_close(sigstore);
    if (created)
        veil_free_secret(created, strlen(created));
    free_models(&st);
    return rc;
}

/* ---- veil keys ---- */

static void keys_help(void) {
    puts("Usage: veil keys <create|list|revoke ID> [--state DIR | --store redis://HOST:PORT[/DB]]\n"
         "\n"
         "Manages the API keys veil serve accepts. Only hashes are stored; a key is\n"
         "shown once, when it is created.");
}

static void print_key(void *ctx, const char *id, long created, int revoked) {
    (void)ctx;
    char when[32];
    time_t t = created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s  %s  %s\n", id, when, revoked ? "revoked" : "active");
}

/* Parses a keys command's --state and its arguments (want: how many), and
 * opens the store; returns CLI_OK with *ks open, or the status to exit with. */
static int keys_open(int argc, char **argv, int want, const char **id, veil_keystore **ks) {
    const char *state = NULL, *store = NULL;
    const cli_opt opts[] = {OPT_STR("state", &state, "DIR", "the state directory (default as veil serve's)"),
                            OPT_STR("store", &store, "URL", "the keys in Redis, as veil serve --store")};
    char usage[64];
    snprintf(usage, sizeof usage, "veil keys %s%s [--state DIR | --store URL]", argv[0], want ? " ID" : "");
    const cli_spec spec = CLI_SPEC("veil keys", usage, NULL, opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_HELP : rc;
    if (argc - pos != want)
        return cli_usage_error("veil keys --help", "'veil keys revoke' takes one ID; the others none");
    if (want)
        *id = argv[pos];
    if (store && !veil_store_is_redis(store))
        return cli_usage_error("veil keys --help", "--store takes a redis://HOST:PORT[/DB] URL");
    if (!store) {
        if (!state)
            state = cli_state_dir();
        if (!state)
            return cli_fail("no state directory: pass --state DIR or set VEIL_STATE_DIR or HOME");
        cli_mkdir_p(state);
    }
    char db[4200];
    store_path(db, store, state, "keys.db");
    veil_err err;
    if (veil_keystore_open(ks, db, &err) != VEIL_OK)
        return cli_fail_err("API keys", &err);
    return CLI_OK;
}

static int keys_create(int argc, char **argv) {
    veil_keystore *ks;
    int rc = keys_open(argc, argv, 0, NULL, &ks);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    char *secret, kid[17];
    veil_err err;
    if (veil_keystore_create(ks, &secret, kid, &err) != VEIL_OK) {
        rc = cli_fail_err("create", &err);
    } else {
        printf("id: %s\nkey: %s\n", kid, secret);
        fprintf(stderr, "veil: the key is shown only now; veil keeps only its hash\n");
        veil_free_secret(secret, strlen(secret));
    }
    veil_keystore_close(ks);
    return rc;
}

static int keys_list(int argc, char **argv) {
    veil_keystore *ks;
    int rc = keys_open(argc, argv, 0, NULL, &ks);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (veil_keystore_list(ks, print_key, NULL) < 0)
        rc = cli_fail("cannot read the key store");
    veil_keystore_close(ks);
    return rc;
}

static int keys_revoke(int argc, char **argv) {
    veil_keystore *ks;
    const char *id = NULL;
    int rc = keys_open(argc, argv, 1, &id, &ks);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    veil_err err;
    if (veil_keystore_revoke(ks, id, &err) != VEIL_OK)
        rc = cli_fail_err("revoke", &err);
    else
        printf("revoked %s\n", id);
    veil_keystore_close(ks);
    return rc;
}

int cmd_keys(int argc, char **argv) {
    static const cli_command commands[] = {
        {"create", "make a key (shown once)", keys_create},
        {"list", "the keys, active and revoked", keys_list},
        {"revoke", "revoke a key by id", keys_revoke},
    };
    return cli_dispatch("veil keys", commands, sizeof commands / sizeof commands[0], argc, argv, keys_help);
}
