/* veil attest: verify a server's TEE attestation locally, trusting nothing it
 * merely claims. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include <curl/curl.h>

#include "client/client_internal.h"
#include "veil/client.h"
#include "veil/eth.h"
#include "veil/secure.h"

static void attest_help(void) {
    puts("Usage: veil attest [--base-url URL] [--api-key KEY] --model ID [--policy FILE]\n"
         "                   [--collateral FILE | --pcs-url URL] [--allow-simulated] [--at UNIX] [--json]\n"
         "\n"
         "Fetches the model's attestation with a fresh 32-byte nonce and verifies it here:\n"
         "nonce and model echo, the TDX quote and its chain to Intel's pinned root, REPORTDATA\n"
         "binding the signing address and the nonce, the signing key, the event log, and the\n"
         "policy. --pcs-url fetches collateral (TCB info, QE identity, CRLs) from Intel's PCS\n"
         "(https://api.trustedservices.intel.com) or a PCCS; without collateral only the\n"
         "chain and signatures are checked. The server's own 'verified' is ignored. A simulated TEE is refused unless\n"
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
                                         {"pcs-url", required_argument, NULL, 'U'},
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
        case 'U': ao.pcs_url = optarg; break;
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
         "                 [--system TEXT] [--policy FILE] [--allow-simulated] [--verify-signature] [--json]\n"
         "                 [PROMPT]\n"
         "\n"
         "Streams the answer to stdout; status lines go to stderr. E2EE (the default) attests\n"
         "the model first, seals the prompt to the attested key, and decrypts every chunk; a\n"
         "chunk that is not sealed to this session is an error, never shown. --tee-only attests\n"
         "and sends plaintext; --plain does neither. --verify-signature checks the response\n"
         "signature against the attested address. PROMPT '-' reads stdin; no PROMPT opens a\n"
         "multi-turn session (one prompt per line). --json prints one JSON object per answer\n"
         "(answer, request_id, mode, signing_address, signature_verified) instead of streaming.");
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
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *base = VEIL_DEFAULT_BASE_URL, *key = getenv("VEIL_API_KEY"), *system = NULL, *policy_path = NULL;
    if (!key)
        key = getenv("API_KEY_VENICE");
    veil_chat_options co;
    memset(&co, 0, sizeof co);
    co.on_text = print_text;
    int c, json_out = 0;
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
        case 'j': json_out = 1; co.on_text = NULL; break;
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
        static const char *const modes[] = {"auto", "E2EE", "TEE-only", "plain"};
        if (json_out) {
            json_t *o = json_pack("{s:s#, s:s, s:s, s:o, s:b}", "answer", r.answer ? r.answer : "", r.answer_len,
                                  "request_id", r.request_id, "mode", modes[r.mode], "signing_address",
                                  r.attestation.signing_address[0] ? json_string(r.attestation.signing_address)
                                                                   : json_null(),
                                  "signature_verified", r.signature_checked);
            json_dumpf(o, stdout, JSON_COMPACT);
            json_decref(o);
        }
        fputc('\n', stdout);
        fflush(stdout);
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

/* ---- veil models ---- */

int cmd_models(int argc, char **argv) {
    static const struct option opts[] = {{"base-url", required_argument, NULL, 'b'},
                                         {"api-key", required_argument, NULL, 'k'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *base = VEIL_DEFAULT_BASE_URL, *key = getenv("VEIL_API_KEY");
    if (!key)
        key = getenv("API_KEY_VENICE");
    int json = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'b')
            base = optarg;
        else if (c == 'k')
            key = optarg;
        else if (c == 'j')
            json = 1;
        else if (c == 'h') {
            puts("Usage: veil models [--base-url URL] [--api-key KEY] [--json]\n\n"
                 "Lists the server's text models with their TEE and E2EE capabilities.");
            return CLI_OK;
        } else
            return cli_usage_error("veil models --help", "bad option '%s' for 'veil models'", argv[optind - 1]);
    }
    if (optind != argc)
        return cli_usage_error("veil models --help", "'veil models' takes no arguments");
    veil_client *client;
    veil_err err;
    if (veil_client_new(&client, base, key, 60, &err) != VEIL_OK)
        return cli_fail_err("client", &err);
    json_t *list = veil_client_models(client, &err);
    veil_client_free(client);
    if (!list)
        return cli_fail_err("models", &err);
    int rc = CLI_OK;
    if (json) {
        json_dumpf(list, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(list, "data"), i, m) {
            json_t *caps = json_object_get(json_object_get(m, "model_spec"), "capabilities");
            printf("%-40s %s%s\n", json_string_value(json_object_get(m, "id")),
                   json_is_true(json_object_get(caps, "supportsE2EE")) ? "E2EE " : "",
                   json_is_true(json_object_get(caps, "supportsTeeAttestation")) ? "TEE" : "");
        }
    }
    json_decref(list);
    return rc;
}

/* ---- veil signature verify ---- */

int cmd_signature(int argc, char **argv) {
    static const struct option opts[] = {{"base-url", required_argument, NULL, 'b'},
                                         {"api-key", required_argument, NULL, 'k'},
                                         {"request-id", required_argument, NULL, 'r'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"text", required_argument, NULL, 't'},
                                         {"signature", required_argument, NULL, 's'},
                                         {"address", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
            goto help;
        return cli_usage_error("veil signature --help", "'veil signature' needs the command 'verify'");
    }
    const char *base = VEIL_DEFAULT_BASE_URL, *key = getenv("VEIL_API_KEY"), *rid = NULL, *model = NULL, *text = NULL,
               *sig = NULL, *address = NULL;
    if (!key)
        key = getenv("API_KEY_VENICE");
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': base = optarg; break;
        case 'k': key = optarg; break;
        case 'r': rid = optarg; break;
        case 'm': model = optarg; break;
        case 't': text = optarg; break;
        case 's': sig = optarg; break;
        case 'a': address = optarg; break;
        case 'h': goto help;
        default: return cli_usage_error("veil signature --help", "bad option '%s'", argv[optind - 1]);
        }
    }
    veil_err err;
    json_t *fetched = NULL;
    if (rid) {
        /* online: fetch the record, then check it like an offline one */
        veil_client *client;
        if (veil_client_new(&client, base, key, 60, &err) != VEIL_OK)
            return cli_fail_err("client", &err);
        char path[512];
        char *e_id = curl_escape(rid, 0), *e_model = curl_escape(model ? model : "", 0);
        snprintf(path, sizeof path, "/tee/signature?request_id=%s%s%s", e_id, model ? "&model=" : "", model ? e_model : "");
        curl_free(e_id);
        curl_free(e_model);
        long status = 0;
        fetched = veil_client_get_json(client, path, &status, &err);
        veil_client_free(client);
        if (!fetched)
            return cli_fail_err("signature", &err);
        if (status != 200) {
            const char *m = json_string_value(json_object_get(json_object_get(fetched, "error"), "message"));
            int rc = cli_fail("signature: HTTP %ld: %s", status, m ? m : "no message");
            json_decref(fetched);
            return rc;
        }
        text = json_string_value(json_object_get(fetched, "text"));
        sig = json_string_value(json_object_get(fetched, "signature"));
        if (!address)
            address = json_string_value(json_object_get(fetched, "signing_address"));
    }
    if (!text || !sig || !address) {
        json_decref(fetched);
        return cli_usage_error("veil signature --help",
                               "give --request-id, or --text, --signature and --address (offline)");
    }
    uint8_t want[20], got[20];
    int rc = CLI_OK;
    if (veil_eth_address_parse(want, address, strlen(address), &err) != VEIL_OK)
        rc = cli_fail_err("address", &err);
    else if (veil_eip191_recover_address(got, text, strlen(text), sig, strlen(sig), &err) != VEIL_OK)
        rc = cli_fail_err("signature", &err);
    else if (memcmp(want, got, 20) != 0) {
        char s[43];
        veil_eth_address_to_string(s, got);
        rc = cli_fail("signature: signed by %s, not %s", s, address);
    } else {
        printf("verified: %s signed \"%s\"\n", address, text);
    }
    json_decref(fetched);
    return rc;
help:
    puts("Usage: veil signature verify --request-id ID [--model ID] [--base-url URL] [--address ADDR]\n"
         "       veil signature verify --text TEXT --signature SIG --address ADDR\n"
         "\n"
         "Checks an EIP-191 response signature: fetched from the server by request id, or given\n"
         "offline. With a request id, pass the address you attested (veil attest) as --address:\n"
         "otherwise the server's own claim of its address is what is compared.");
    return CLI_OK;
}
