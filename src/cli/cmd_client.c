/* veil attest: verify a server's TEE attestation locally, trusting nothing it
 * merely claims. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "veil/client.h"
#include "veil/secure.h"

static void attest_help(void) {
    puts("Usage: veil attest [--base-url URL] [--api-key KEY] --model ID [--policy FILE]\n"
         "                   [--collateral FILE] [--allow-simulated] [--at UNIX] [--json]\n"
         "\n"
         "Fetches the model's attestation with a fresh 32-byte nonce and verifies it here:\n"
         "nonce and model echo, the TDX quote and its chain to Intel's pinned root, REPORTDATA\n"
         "binding the signing address and the nonce, the signing key, the event log, and the\n"
         "policy. The server's own 'verified' is ignored. A simulated TEE is refused unless\n"
         "--allow-simulated is given.\n"
         "\n"
         "The base URL defaults to " VEIL_DEFAULT_BASE_URL "; the key to $VEIL_API_KEY or\n"
         "$API_KEY_VENICE. Exit status: 0 every check passed, 1 a check failed, 2 usage or\n"
         "an attestation that could not be fetched or read.");
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 22);
    *n = buf ? fread(buf, 1, (1 << 22) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[*n] = '\0';
    return buf;
}

/* Reads a policy file; returns CLI_OK or the usage error it printed. */
static int load_policy(const char *path, veil_quote_policy *policy, const char *hint) {
    size_t n;
    veil_err err;
    char *t = slurp(path, &n);
    int ok = t && veil_policy_parse(policy, t, n, &err) == VEIL_OK;
    free(t);
    return ok ? CLI_OK : cli_usage_error(hint, "%s: %s", path, t ? err.message : "cannot read");
}

int cmd_attest(int argc, char **argv) {
    static const struct option opts[] = {{"base-url", required_argument, NULL, 'b'},
                                         {"api-key", required_argument, NULL, 'k'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"policy", required_argument, NULL, 'p'},
                                         {"collateral", required_argument, NULL, 'c'},
                                         {"allow-simulated", no_argument, NULL, 's'},
                                         {"at", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *base = VEIL_DEFAULT_BASE_URL, *key = getenv("VEIL_API_KEY"), *policy_path = NULL, *col_path = NULL;
    if (!key)
        key = getenv("API_KEY_VENICE");
    veil_attest_options ao;
    memset(&ao, 0, sizeof ao);
    int json = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'b': base = optarg; break;
        case 'k': key = optarg; break;
        case 'm': ao.model = optarg; break;
        case 'p': policy_path = optarg; break;
        case 'c': col_path = optarg; break;
        case 's': ao.allow_simulated = 1; break;
        case 't':
            ao.at = strtoll(optarg, &end, 10);
            if (*end || ao.at <= 0)
                return cli_usage_error("veil attest --help", "--at takes a Unix time");
            break;
        case 'j': json = 1; break;
        case 'h': attest_help(); return CLI_OK;
        default: return cli_usage_error("veil attest --help", "bad option '%s' for 'veil attest'", argv[optind - 1]);
        }
    }
    if (optind != argc || !ao.model)
        return cli_usage_error("veil attest --help", "'veil attest' needs --model ID and no other arguments");
    veil_err err;
    veil_quote_policy policy;
    veil_collateral *col = NULL;
    size_t n;
    if (policy_path) {
        int prc = load_policy(policy_path, &policy, "veil attest --help");
        if (prc != CLI_OK)
            return prc;
        ao.policy = &policy;
    }
    if (col_path) {
        char *t = slurp(col_path, &n);
        int ok = t && veil_collateral_parse(&col, t, n, &err) == VEIL_OK;
        free(t);
        if (!ok)
            return cli_usage_error("veil attest --help", "%s: %s", col_path, t ? err.message : "cannot read");
        ao.collateral = col;
    }
    veil_client *client;
    if (veil_client_new(&client, base, key, 60, &err) != VEIL_OK) {
        veil_collateral_free(col);
        return cli_fail_err("client", &err);
    }
    veil_attestation a;
    veil_rc rc = veil_client_attest(client, &ao, &a, &err);
    veil_client_free(client);
    veil_collateral_free(col);
    if (rc != VEIL_OK) {
        fprintf(stderr, "veil: attestation: %s\n", err.message);
        return CLI_USAGE;
    }
    static const char *const words[] = {"PASS", "FAIL", "SKIP"};
    if (json) {
        json_t *checks = json_array();
        for (size_t i = 0; i < a.n_checks; i++)
            json_array_append_new(checks, json_pack("{s:s, s:s, s:s}", "check", a.checks[i].name, "result",
                                                    words[a.checks[i].result], "reason", a.checks[i].reason));
        json_t *o = json_pack("{s:b, s:s, s:s, s:b, s:s, s:o, s:o}", "accepted", a.accepted, "signing_address",
                              a.signing_address, "tee_provider", a.tee_provider, "simulated", a.simulated,
                              "code", veil_quote_code_name(a.verdict.code), "tcb_status",
                              a.verdict.tcb_status[0] ? json_string(a.verdict.tcb_status) : json_null(), "checks",
                              checks);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    } else {
        for (size_t i = 0; i < a.n_checks; i++)
            printf("%s  %-34s %s\n", words[a.checks[i].result], a.checks[i].name, a.checks[i].reason);
        printf("%s: %s, signing address %s%s\n", a.accepted ? "accepted" : "REJECTED", ao.model,
               a.signing_address[0] ? a.signing_address : "(none)", a.simulated ? " (SIMULATED TEE)" : "");
    }
    return a.accepted ? CLI_OK : CLI_FAIL;
}

/* ---- veil chat ---- */

static void chat_help(void) {
    puts("Usage: veil chat [--base-url URL] [--api-key KEY] --model ID [--e2ee | --tee-only | --plain]\n"
         "                 [--system TEXT] [--policy FILE] [--allow-simulated] [--verify-signature] [PROMPT]\n"
         "\n"
         "Streams the answer to stdout; status lines go to stderr. E2EE (the default) attests\n"
         "the model first, seals the prompt to the attested key, and decrypts every chunk; a\n"
         "chunk that is not sealed to this session is an error, never shown. --tee-only attests\n"
         "and sends plaintext; --plain does neither. --verify-signature checks the response\n"
         "signature against the attested address. PROMPT '-' reads stdin; no PROMPT opens a\n"
         "multi-turn session (one prompt per line).");
}

static void print_text(void *ctx, const char *text, size_t n) {
    (void)ctx;
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

int cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {{"base-url", required_argument, NULL, 'b'},
                                         {"api-key", required_argument, NULL, 'k'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"e2ee", no_argument, NULL, 'E'},
                                         {"tee-only", no_argument, NULL, 'T'},
                                         {"plain", no_argument, NULL, 'P'},
                                         {"system", required_argument, NULL, 'S'},
                                         {"policy", required_argument, NULL, 'p'},
                                         {"allow-simulated", no_argument, NULL, 's'},
                                         {"verify-signature", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *base = VEIL_DEFAULT_BASE_URL, *key = getenv("VEIL_API_KEY"), *system = NULL, *policy_path = NULL;
    if (!key)
        key = getenv("API_KEY_VENICE");
    veil_chat_options co;
    memset(&co, 0, sizeof co);
    co.on_text = print_text;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': base = optarg; break;
        case 'k': key = optarg; break;
        case 'm': co.model = optarg; break;
        case 'E': co.mode = VEIL_CHAT_E2EE; break;
        case 'T': co.mode = VEIL_CHAT_TEE; break;
        case 'P': co.mode = VEIL_CHAT_PLAIN; break;
        case 'S': system = optarg; break;
        case 'p': policy_path = optarg; break;
        case 's': co.attest.allow_simulated = 1; break;
        case 'v': co.verify_signature = 1; break;
        case 'h': chat_help(); return CLI_OK;
        default: return cli_usage_error("veil chat --help", "bad option '%s' for 'veil chat'", argv[optind - 1]);
        }
    }
    if (!co.model || argc - optind > 1)
        return cli_usage_error("veil chat --help", "'veil chat' needs --model ID and at most one PROMPT");
    veil_err err;
    veil_quote_policy policy;
    size_t n;
    if (policy_path) {
        int prc = load_policy(policy_path, &policy, "veil chat --help");
        if (prc != CLI_OK)
            return prc;
        co.attest.policy = &policy;
    }
    veil_client *client;
    if (veil_client_new(&client, base, key, 120, &err) != VEIL_OK)
        return cli_fail_err("client", &err);
    json_t *history = json_array();
    if (system)
        json_array_append_new(history, json_pack("{s:s, s:s}", "role", "system", "content", system));
    int interactive = optind == argc, rc = CLI_OK;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        char *prompt = NULL;
        uint8_t *owned = NULL;
        if (!interactive && !strcmp(argv[optind], "-")) {
            owned = cli_read_stdin(1 << 20, &n);
            if (!owned) {
                rc = CLI_FAIL;
                break;
            }
            prompt = (char *)owned;
        } else if (!interactive) {
            prompt = argv[optind];
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
        }
        json_array_append_new(history, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
        if (owned)
            veil_free_secret(owned, n + 1);
        veil_chat_result r;
        if (veil_client_chat(client, &co, history, &r, &err) != VEIL_OK) {
            fputc('\n', stdout);
            rc = cli_fail("chat: %s", err.message);
            break;
        }
        fputc('\n', stdout);
        fflush(stdout);
        static const char *const modes[] = {"auto", "E2EE", "TEE-only", "plain"};
        fprintf(stderr, "veil: %s answer from %s%s%s%s\n", modes[r.mode], co.model,
                r.attestation.signing_address[0] ? ", attested signing address " : "", r.attestation.signing_address,
                r.signature_checked ? ", signature verified" : "");
        json_array_append_new(history, json_pack("{s:s, s:s#}", "role", "assistant", "content", r.answer ? r.answer : "",
                                                 r.answer_len));
        veil_chat_result_clear(&r);
        if (!interactive)
            break;
    }
    free(line);
    json_decref(history); /* holds plaintext turns; jansson frees without wiping */
    veil_client_free(client);
    return rc;
}
