/* veil chat: chat with a model, E2EE (attest, seal, decrypt every chunk),
 * TEE-only or plain, optionally checking the response signature. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "veil/client.h"
#include "veil/secure.h"

static void print_text(void *ctx, const char *text, size_t n) {
    (void)ctx;
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

/* The conversation so far: every turn's text is owned and wiped when freed. */
typedef struct history {
    veil_message *m;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *text, size_t len) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        veil_message *m = realloc(h->m, cap * sizeof *m);
        if (!m)
            return 0;
        h->m = m;
        h->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return 0;
    memcpy(copy, text, len);
    copy[len] = '\0';
    h->m[h->n++] = (veil_message){role, copy, len};
    return 1;
}

static void history_free(history *h) {
    for (size_t i = 0; i < h->n; i++)
        veil_free_secret((char *)h->m[i].content, h->m[i].content_len + 1);
    free(h->m);
}

int cmd_chat(int argc, char **argv) {
    cli_endpoint ep;
    cli_endpoint_init(&ep);
    veil_chat_options co;
    memset(&co, 0, sizeof co);
    co.on_text = print_text;
    const char *system = NULL, *policy_path = NULL;
    int json_out = 0, mode = VEIL_CHAT_AUTO;
    const cli_opt opts[] = {
        CLI_ENDPOINT_OPTS(&ep),
        OPT_STR("model", &co.model, "ID", "the model (required)"),
        OPT_SET("e2ee", &mode, VEIL_CHAT_E2EE,
                "attest, seal the prompt, decrypt every chunk (the default for E2EE models)"),
        OPT_SET("tee-only", &mode, VEIL_CHAT_TEE, "attest and send plaintext"),
        OPT_SET("plain", &mode, VEIL_CHAT_PLAIN, "neither attest nor encrypt"),
        OPT_STR("system", &system, "TEXT", "a system message first"),
        OPT_STR("policy", &policy_path, "FILE", "an attestation policy (JSON)"),
        OPT_FLAG("allow-simulated", &co.attest.allow_simulated, "accept a simulated TEE (its own root)"),
        OPT_FLAG("verify-signature", &co.verify_signature, "check the response signature against the attested address"),
        OPT_FLAG("json", &json_out, "one JSON object per answer instead of streaming"),
    };
    static const char about[] =
        "Streams the answer to stdout; status lines go to stderr. E2EE (the default) attests\n"
        "the model first, seals the prompt to the attested key, and decrypts every chunk; a\n"
        "chunk that is not sealed to this session is an error, never shown. --tee-only attests\n"
        "and sends plaintext; --plain does neither. --verify-signature checks the response\n"
        "signature against the attested address. PROMPT '-' reads stdin; no PROMPT opens a\n"
        "multi-turn session (one prompt per line). --json prints one JSON object per answer\n"
        "(answer, request_id, mode, signing_address, signature_verified) instead of streaming.";
    const cli_spec spec = CLI_SPEC("veil chat", "veil chat --model ID [options] [PROMPT]", about, opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    co.mode = (veil_chat_mode)mode;
    if (json_out)
        co.on_text = NULL;
    if (!co.model || argc - pos > 1)
        return cli_usage_error("veil chat --help", "'veil chat' needs --model ID and at most one PROMPT");
    veil_err err;
    veil_quote_policy policy;
    if (policy_path) {
        if ((rc = cli_load_policy(policy_path, &policy, "veil chat --help")) != CLI_OK)
            return rc;
        co.attest.policy = &policy;
    }
    veil_client *client;
    if (cli_client_new(&client, &ep, 120, &err) != VEIL_OK)
        return cli_fail_err("client", &err);
    history h = {0};
    if (system && !history_add(&h, "system", system, strlen(system))) {
        veil_client_free(client);
        return cli_fail("out of memory");
    }
    int interactive = pos == argc;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        size_t n = 0;
        uint8_t *owned = NULL;
        const char *prompt;
        if (!interactive && !strcmp(argv[pos], "-")) {
            owned = cli_read_stdin(1 << 20, &n);
            if (!owned) {
                rc = CLI_FAIL;
                break;
            }
            prompt = (const char *)owned;
        } else if (!interactive) {
            prompt = argv[pos];
            n = strlen(prompt);
        } else {
            fputs("> ", stderr);
            ssize_t got = getline(&line, &cap, stdin);
            if (got < 0)
                break;
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
                line[--got] = '\0';
            if (!got)
                continue;
            prompt = line;
            n = (size_t)got;
        }
        int added = history_add(&h, "user", prompt, n);
        if (owned)
            veil_free_secret(owned, n + 1);
        if (!added) {
            rc = cli_fail("out of memory");
            break;
        }
        veil_chat_result r;
        if (veil_client_chat(client, &r, &co, h.m, h.n, &err) != VEIL_OK) {
            fputc('\n', stdout);
            rc = cli_fail("chat: %s", err.message);
            break;
        }
        static const char *const modes[] = {"auto", "E2EE", "TEE-only", "plain"};
        if (json_out) {
            json_t *o =
                json_pack("{s:s#, s:s, s:s, s:o, s:b}", "answer", r.answer ? r.answer : "", r.answer_len, "request_id",
                          r.request_id, "mode", modes[r.mode], "signing_address",
                          r.attestation.signing_address[0] ? json_string(r.attestation.signing_address) : json_null(),
                          "signature_verified", r.signature_checked);
            json_dumpf(o, stdout, JSON_COMPACT);
            json_decref(o);
        }
        fputc('\n', stdout);
        fflush(stdout);
        fprintf(stderr, "veil: %s answer from %s%s%s%s\n", modes[r.mode], co.model,
                r.attestation.signing_address[0] ? ", attested signing address " : "", r.attestation.signing_address,
                r.signature_checked ? ", signature verified" : "");
        added = history_add(&h, "assistant", r.answer ? r.answer : "", r.answer_len);
        veil_chat_result_clear(&r);
        if (!added) {
            rc = cli_fail("out of memory");
            break;
        }
        if (!interactive)
            break;
    }
    if (line)
        veil_free_secret(line, cap);
    history_free(&h);
    veil_client_free(client);
    return rc;
}
