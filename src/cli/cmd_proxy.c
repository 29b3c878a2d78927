/* veil proxy: a local OpenAI-compatible endpoint that makes every request to
 * a TEE model end-to-end encrypted and verified (src/proxy/, docs/proxy.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../proxy/proxy.h"
#include "cli.h"
#include "veil/secure.h"

static int is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost") ||
           !strncmp(host, "127.", 4);
}

static void on_ready(void *ctx, const char *host, int port) {
    const veil_proxy_config *c = ctx;
    const char *h = strchr(host, ':') ? "[::1]" : host;
    printf("veil proxy: listening on http://%s:%d/v1 (and /api/v1), upstream %s\n", h, port, c->base_url);
    printf("  TEE models: attested with a fresh nonce before first use and every %ld s; messages sealed to\n"
           "  the attested key; every chunk decrypted here; the response signature checked before [DONE]\n",
           c->reattest_s);
    printf("  what E2EE cannot carry (tools, web search, files): %s\n",
           c->allow_tee_only ? "sent to the attested TEE unencrypted (--allow-tee-only)" : "refused (400)");
    printf("  non-TEE models: %s\n", c->allow_plain ? "passed through unverified (--allow-plain)" : "refused (400)");
    printf("  streams: %s\n", c->hold_until_verified
                                  ? "held until the signature checks out, then sent whole (--hold-until-verified)"
                                  : "passed on as they decrypt; [DONE] only after the signature checks out");
    if (c->attest.allow_simulated)
        printf("  a SIMULATED TEE is accepted (--allow-simulated): no hardware vouches for it\n");
    if (c->tls_attested)
        printf("  TLS: the upstream's certificate is trusted through its attested binding (--tls-attested)\n");
    if (!is_loopback(host))
        printf("  WARNING: listening on %s, not loopback: whoever reaches it uses this proxy's API key\n", host);
    printf("  status: GET http://%s:%d/veil/status\n", h, port);
    printf("  try: OPENAI_BASE_URL=http://%s:%d/v1 OPENAI_API_KEY=unused <your OpenAI tool>\n", h, port);
    fflush(stdout);
}

int cmd_proxy(int argc, char **argv) {
    /* jansson holds prompts and answers in plaintext: every block it frees is wiped first */
    json_set_alloc_funcs(malloc, veil_free_wiped);
    cli_endpoint ep;
    cli_endpoint_init(&ep);
    veil_proxy_config c;
    memset(&c, 0, sizeof c);
    const char *listen = "127.0.0.1:8787", *policy_path = NULL, *col_path = NULL;
    long reattest = 300, timeout = 120;
    const cli_opt opts[] = {
        OPT_STR("listen", &listen, "HOST:PORT", "where tools connect (default 127.0.0.1:8787; port 0 picks one)"),
        CLI_ENDPOINT_OPTS(&ep),
        OPT_STR("policy", &policy_path, "FILE", "an attestation policy (JSON; docs/serve.md)"),
        OPT_STR("collateral", &col_path, "FILE", "DCAP collateral: TCB info, QE identity, CRLs"),
        OPT_STR("pcs-url", &c.attest.pcs_url, "URL", "fetch collateral from Intel's PCS or a PCCS"),
        OPT_FLAG("allow-simulated", &c.attest.allow_simulated, "accept a simulated TEE (its own root)"),
        OPT_FLAG("allow-tee-only", &c.allow_tee_only,
                 "send what E2EE cannot carry (tools, web search, files; TEE-only models) to the attested TEE "
                 "unencrypted instead of refusing it"),
        OPT_FLAG("allow-plain", &c.allow_plain, "pass requests for non-TEE models through, unverified"),
        OPT_FLAG("hold-until-verified", &c.hold_until_verified,
                 "hold a streamed answer until its signature checked out, then send it whole: the tool never "
                 "sees unproven text (and gets its first token only at the end)"),
        OPT_LONG("reattest", &reattest, 1, 86400 * 30, "SECONDS",
                 "attest each model again after this long (default 300)"),
        OPT_LONG("timeout", &timeout, 1, 86400, "SECONDS", "upstream silence before a request fails (default 120)"),
    };
    static const char about[] =
        "A local OpenAI-compatible endpoint (/v1 and /api/v1: models, chat/completions, streamed\n"
        "or not) for tools that speak the OpenAI API: point their base URL here. Each TEE model is\n"
        "attested with a fresh nonce before its first use, again every --reattest seconds and\n"
        "whenever the server's key changes; requests wait for a verified attestation and get 503\n"
        "while it fails. Messages are sealed to the attested key, the upstream request is always\n"
        "streamed, every chunk must decrypt (else the answer ends in an error: the tool never\n"
        "sees unverified text), and the response signature is checked against the attested\n"
        "address before the tool gets [DONE] (or, not streamed, the body). GET /veil/status shows\n"
        "the last attestation report per model. Content is never logged.";
    const cli_spec spec = CLI_SPEC("veil proxy", "veil proxy [options]", about, opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil proxy --help", "'veil proxy' takes no arguments");
    static char host[256];
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host || !end || *end || port < 0 ||
        port > 65535)
        return cli_usage_error("veil proxy --help", "--listen takes HOST:PORT, e.g. 127.0.0.1:8787");
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:8787 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    veil_quote_policy policy;
    veil_collateral *col = NULL;
    if (policy_path) {
        if ((rc = cli_load_policy(policy_path, &policy, "veil proxy --help")) != CLI_OK)
            return rc;
        c.attest.policy = &policy;
    }
    if (col_path) {
        if ((rc = cli_load_collateral(col_path, &col, "veil proxy --help")) != CLI_OK)
            return rc;
        c.attest.collateral = col;
    }
    c.host = host;
    c.port = (int)port;
    c.base_url = ep.base;
    c.api_key = ep.key && *ep.key ? ep.key : NULL;
    c.tls_attested = ep.tls_attested;
    c.reattest_s = reattest;
    c.timeout_s = timeout;
    c.banner = stdout;
    c.on_ready = on_ready;
    c.ready_ctx = &c;
    veil_err err;
    rc = veil_proxy_run(&c, &err) == VEIL_OK ? CLI_OK : cli_fail_err("proxy", &err);
    veil_collateral_free(col);
    return rc;
}
