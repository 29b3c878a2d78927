/* veil models: a server's text models and their TEE and E2EE capabilities. */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "veil/client.h"

int cmd_models(int argc, char **argv) {
    cli_endpoint ep;
    cli_endpoint_init(&ep);
    int json = 0;
    const cli_opt opts[] = {
        CLI_ENDPOINT_OPTS(&ep),
        OPT_FLAG("json", &json, "print the server's list as JSON"),
    };
    const cli_spec spec = CLI_SPEC("veil models", "veil models [--base-url URL] [--api-key KEY] [--json]",
                                   "Lists the server's text models with their TEE and E2EE capabilities.", opts);
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil models --help", "'veil models' takes no arguments");
    veil_client *client;
    veil_err err;
    if (cli_client_new(&client, &ep, 60, &err) != VEIL_OK)
        return cli_fail_err("client", &err);
    char *text = NULL;
    veil_rc vrc = veil_client_models(client, &text, &err);
    veil_client_free(client);
    if (vrc != VEIL_OK)
        return cli_fail_err("models", &err);
    json_t *list = json_loads(text, 0, NULL);
    free(text);
    if (!list)
        return cli_fail("models: out of memory");
    if (json) {
        json_dumpf(list, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(list, "data"), i, m) {
            json_t *caps = json_object_get(json_object_get(m, "model_spec"), "capabilities");
            const char *id = json_string_value(json_object_get(m, "id"));
            printf("%-40s %s%s\n", id ? id : "?", json_is_true(json_object_get(caps, "supportsE2EE")) ? "E2EE " : "",
                   json_is_true(json_object_get(caps, "supportsTeeAttestation")) ? "TEE" : "");
        }
    }
    json_decref(list);
    return CLI_OK;
}
