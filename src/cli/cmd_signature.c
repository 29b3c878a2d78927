/* veil signature verify: check an EIP-191 response signature, fetched from
 * the server by request id or given offline. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "client/client_internal.h"
#include "veil/eth.h"

static const char about[] = "Checks an EIP-191 response signature: fetched from the server by request id, or given\n"
                            "offline. With a request id, pass the address you attested (veil attest) as --address:\n"
                            "otherwise the server's own claim of its address is what is compared.";

/* GET /tee/signature for a request id: the record (owned), or NULL after printing why. */
static json_t *fetch(const cli_endpoint *ep, const char *rid, const char *model) {
    veil_client *client;
    veil_err err;
    if (cli_client_new(&client, ep, 60, &err) != VEIL_OK) {
        cli_fail_err("client", &err);
        return NULL;
    }
    char path[512];
    char *e_id = curl_escape(rid, 0), *e_model = curl_escape(model ? model : "", 0);
    snprintf(path, sizeof path, "/tee/signature?request_id=%s%s%s", e_id, model ? "&model=" : "", model ? e_model : "");
    curl_free(e_id);
    curl_free(e_model);
    long status = 0;
    json_t *fetched = veil_client_get_json(client, path, &status, &err);
    veil_client_free(client);
    if (!fetched) {
        cli_fail_err("signature", &err);
        return NULL;
    }
    if (status != 200) {
        const char *m = json_string_value(json_object_get(json_object_get(fetched, "error"), "message"));
        cli_fail("signature: HTTP %ld: %s", status, m ? m : "no message");
        json_decref(fetched);
        return NULL;
    }
    return fetched;
}

static int cmd_verify(int argc, char **argv) {
    cli_endpoint ep;
    cli_endpoint_init(&ep);
    const char *rid = NULL, *model = NULL, *text = NULL, *sig = NULL, *address = NULL;
    const cli_opt opts[] = {
        CLI_ENDPOINT_OPTS(&ep),
        OPT_STR("request-id", &rid, "ID", "fetch the signature of this response from the server"),
        OPT_STR("model", &model, "ID", "the response's model (with --request-id)"),
        OPT_STR("text", &text, "TEXT", "the signed text (offline)"),
        OPT_STR("signature", &sig, "SIG", "the signature, 0x r||s||v (offline)"),
        OPT_STR("address", &address, "ADDR", "the address that must have signed (the attested one)"),
    };
    const cli_spec spec =
        CLI_SPEC("veil signature",
                 "veil signature verify --request-id ID [--model ID] [--base-url URL] [--address ADDR]\n"
                 "       veil signature verify --text TEXT --signature SIG --address ADDR",
                 about, opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil signature --help", "'veil signature verify' takes no arguments");
    json_t *fetched = NULL;
    if (rid) { /* online: fetch the record, then check it like an offline one */
        if (!(fetched = fetch(&ep, rid, model)))
            return CLI_FAIL;
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
    veil_err err;
    uint8_t want[20], got[20];
    rc = CLI_OK;
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
}

static void help(void) {
    puts("Usage: veil signature verify [options]\n");
    puts(about);
    puts("\nRun 'veil signature verify --help' for its options.");
}

int cmd_signature(int argc, char **argv) {
    static const cli_command commands[] = {{"verify", "check a response signature", cmd_verify}};
    return cli_dispatch("veil signature", commands, 1, argc, argv, help);
}
