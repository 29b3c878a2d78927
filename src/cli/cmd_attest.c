/* veil attest: verify a server's TEE attestation locally, trusting nothing it
 * merely claims. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "veil/client.h"

int cmd_attest(int argc, char **argv) {
    cli_endpoint ep;
    cli_endpoint_init(&ep);
    veil_attest_options ao;
    memset(&ao, 0, sizeof ao);
    const char *policy_path = NULL, *col_path = NULL;
    int json = 0;
    const cli_opt opts[] = {
        CLI_ENDPOINT_OPTS(&ep),
        OPT_STR("model", &ao.model, "ID", "the model whose attestation to verify (required)"),
        OPT_STR("policy", &policy_path, "FILE", "an attestation policy (JSON; docs/serve.md)"),
        OPT_STR("collateral", &col_path, "FILE", "DCAP collateral: TCB info, QE identity, CRLs"),
        OPT_STR("pcs-url", &ao.pcs_url, "URL", "fetch collateral from Intel's PCS or a PCCS"),
        OPT_FLAG("allow-simulated", &ao.allow_simulated, "accept a simulated TEE (its own root)"),
        OPT_TIME("at", &ao.at, "check validity at this time instead of now"),
        OPT_FLAG("json", &json, "print the checks as JSON"),
    };
    static const char about[] =
        "Fetches the model's attestation with a fresh 32-byte nonce and verifies it here:\n"
        "nonce and model echo, the TDX quote and its chain to Intel's pinned root, REPORTDATA\n"
        "binding the signing address and the nonce, the signing key, the event log, and the\n"
        "policy. --pcs-url fetches collateral (TCB info, QE identity, CRLs) from Intel's PCS\n"
        "(https://api.trustedservices.intel.com) or a PCCS; without collateral only the\n"
        "chain and signatures are checked. The server's own 'verified' is ignored. A simulated\n"
        "TEE is refused unless --allow-simulated is given.\n"
        "\n"
        "Exit status: 0 every check passed, 1 a check failed, 2 usage or an attestation that\n"
        "could not be fetched or read.";
    const cli_spec spec = CLI_SPEC("veil attest", "veil attest --model ID [options]", about, opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc || !ao.model)
        return cli_usage_error("veil attest --help", "'veil attest' needs --model ID and no other arguments");
    veil_err err;
    veil_quote_policy policy;
    veil_collateral *col = NULL;
    if (policy_path) {
        if ((rc = cli_load_policy(policy_path, &policy, "veil attest --help")) != CLI_OK)
            return rc;
        ao.policy = &policy;
    }
    if (col_path) {
        if ((rc = cli_load_collateral(col_path, &col, "veil attest --help")) != CLI_OK)
            return rc;
        ao.collateral = col;
    }
    veil_client *client;
    if (cli_client_new(&client, &ep, 60, &err) != VEIL_OK) {
        veil_collateral_free(col);
        return cli_fail_err("client", &err);
    }
    veil_attestation a;
    veil_rc vrc = veil_client_attest(client, &a, &ao, &err);
    veil_client_free(client);
    veil_collateral_free(col);
    if (vrc != VEIL_OK) {
        fprintf(stderr, "veil: attestation: %s\n", err.message);
        return CLI_USAGE;
    }
    static const char *const words[] = {"PASS", "FAIL", "SKIP"};
    if (json) {
        json_t *checks = json_array();
        for (size_t i = 0; i < a.n_checks; i++)
            json_array_append_new(checks, json_pack("{s:s, s:s, s:s}", "check", a.checks[i].name, "result",
                                                    words[a.checks[i].result], "reason", a.checks[i].reason));
        json_t *o = json_pack(
            "{s:b, s:s, s:s, s:b, s:s, s:o, s:o}", "accepted", a.accepted, "signing_address", a.signing_address,
            "tee_provider", a.tee_provider, "simulated", a.simulated, "code", veil_quote_code_name(a.verdict.code),
            "tcb_status", a.verdict.tcb_status[0] ? json_string(a.verdict.tcb_status) : json_null(), "checks", checks);
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
