/* veil tee: the quote providers by hand: a quote for given report data, and
 * the simulated platform's root certificate and collateral. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "veil/hex.h"
#include "veil/provider.h"
#include "veil/sim.h"

static void help(void) {
    puts("Usage: veil tee <command> [options]\n"
         "\n"
         "Commands:\n"
         "  quote --report-data HEX [--tee auto|tdx|dstack|sim] [--out FILE] [--event-log-out FILE]\n"
         "        [--sim-debug]   (a simulated TD in debug mode, for testing verifiers)\n"
         "                        a fresh quote over 64 bytes of report data (hex on stdout,\n"
         "                        or binary into --out)\n"
         "  sim-root              the simulated platform's root CA certificate (PEM)\n"
         "  sim-collateral --out FILE [--revoke-pck]\n"
         "                        collateral for simulated quotes, valid for 30 days\n"
         "\n"
         "Common options:\n"
         "  --state DIR           state directory (default $VEIL_STATE_DIR, else\n"
         "                        $XDG_STATE_HOME/veil, else ~/.local/state/veil);\n"
         "                        the simulator keeps its CA keys in DIR/sim-tdx\n"
         "  --configfs PATH       configfs-tsm report directory (default " VEIL_CONFIGFS_TSM_REPORT ")\n"
         "  --dstack-socket PATH  dstack guest agent socket (default " VEIL_DSTACK_SOCKET ")");
}

typedef struct tee_args {
    const char *state, *configfs, *socket, *report_data, *out, *log_out, *tee;
    int revoke_pck, sim_debug;
} tee_args;

/* One table for the group's commands (each ignores what it does not use);
 * returns CLI_OK, CLI_HELP (printed) or a usage error. */
static int parse(int argc, char **argv, tee_args *a) {
    memset(a, 0, sizeof *a);
    const cli_opt opts[] = {
        OPT_STR("state", &a->state, "DIR", "state directory"),
        OPT_STR("configfs", &a->configfs, "PATH", "configfs-tsm report directory"),
        OPT_STR("dstack-socket", &a->socket, "PATH", "dstack guest agent socket"),
        OPT_STR("report-data", &a->report_data, "HEX", "64 bytes of report data"),
        OPT_STR("out", &a->out, "FILE", "where to write"),
        OPT_STR("event-log-out", &a->log_out, "FILE", "where to write the event log"),
        OPT_CHOICE("tee", &a->tee, "auto|tdx|dstack|sim", "the quote provider"),
        OPT_FLAG("revoke-pck", &a->revoke_pck, "collateral whose CRL revokes the PCK"),
        OPT_FLAG("sim-debug", &a->sim_debug, "a simulated TD in debug mode"),
    };
    char cmd[64];
    snprintf(cmd, sizeof cmd, "veil tee %s", argv[0]);
    const cli_spec spec = {"veil tee", cmd, NULL, opts, sizeof opts / sizeof opts[0]};
    int pos, rc = cli_parse(&spec, argc, argv, &pos);
    if (rc != CLI_OK)
        return rc;
    if (pos != argc)
        return cli_usage_error("veil tee --help", "'veil tee %s' takes no arguments", argv[0]);
    if (!a->state)
        a->state = cli_state_dir();
    return a->state ? CLI_OK : cli_fail("no state directory: set VEIL_STATE_DIR or HOME");
}

static int open_sim(const tee_args *a, veil_sim **sim) {
    veil_err err;
    if (veil_sim_open(sim, a->state, NULL, &err) != VEIL_OK)
        return cli_fail_err("simulated TDX", &err);
    return CLI_OK;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f)
        ok &= fclose(f) == 0;
    return ok ? CLI_OK : cli_fail("cannot write %s", path);
}

static int cmd_sim_root(int argc, char **argv) {
    tee_args a;
    int rc = parse(argc, argv, &a);
    if (rc == CLI_HELP)
        return CLI_OK;
    veil_sim *sim = NULL;
    if (rc == CLI_OK)
        rc = open_sim(&a, &sim);
    char *pem = NULL;
    veil_err err;
    if (rc == CLI_OK && veil_sim_root_pem(sim, &pem, &err) != VEIL_OK)
        rc = cli_fail_err("sim-root", &err);
    if (pem)
        fputs(pem, stdout);
    free(pem);
    veil_sim_free(sim);
    return rc;
}

static int cmd_sim_collateral(int argc, char **argv) {
    tee_args a;
    int rc = parse(argc, argv, &a);
    if (rc == CLI_HELP)
        return CLI_OK;
    if (rc == CLI_OK && !a.out)
        rc = cli_usage_error("veil tee --help", "'veil tee sim-collateral' needs --out FILE");
    veil_sim *sim = NULL;
    if (rc == CLI_OK)
        rc = open_sim(&a, &sim);
    char *json = NULL;
    veil_err err;
    if (rc == CLI_OK && veil_sim_collateral(sim, &json, (int64_t)time(NULL), a.revoke_pck, &err) != VEIL_OK)
        rc = cli_fail_err("sim-collateral", &err);
    if (rc == CLI_OK)
        rc = write_file(a.out, json, strlen(json));
    free(json);
    veil_sim_free(sim);
    return rc;
}

static int cmd_tee_quote(int argc, char **argv) {
    tee_args a;
    int rc = parse(argc, argv, &a);
    if (rc == CLI_HELP)
        return CLI_OK;
    if (rc != CLI_OK)
        return rc;
    uint8_t rd[64];
    if (!a.report_data)
        return cli_usage_error("veil tee --help", "'veil tee quote' needs --report-data HEX (64 bytes)");
    if (veil_hex_decode_exact(rd, 64, a.report_data, strlen(a.report_data), 1, NULL) != VEIL_OK)
        return cli_usage_error("veil tee --help", "--report-data must be 128 hex characters");
    veil_tee_kind kind = VEIL_TEE_AUTO;
    if (a.tee && !strcmp(a.tee, "tdx"))
        kind = VEIL_TEE_TDX;
    else if (a.tee && !strcmp(a.tee, "dstack"))
        kind = VEIL_TEE_DSTACK;
    else if (a.tee && !strcmp(a.tee, "sim"))
        kind = VEIL_TEE_SIM;
    veil_sim_options sim_opts = {a.sim_debug, NULL};
    veil_provider_config cfg = {a.configfs, a.socket, a.state, &sim_opts};
    veil_quote_provider *p;
    veil_err err;
    if (veil_provider_open(&p, kind, &cfg, &err) != VEIL_OK)
        return cli_fail_err("quote provider", &err);
    uint8_t *quote = NULL;
    size_t len = 0;
    char *log = NULL;
    if (veil_provider_get_quote(p, &quote, &len, &log, rd, &err) != VEIL_OK)
        rc = cli_fail_err(veil_provider_name(p), &err);
    if (rc == CLI_OK) {
        fprintf(stderr, "veil: quote from %s%s\n", veil_provider_name(p),
                veil_provider_is_simulated(p) ? " (SIMULATED: not a TEE)" : "");
        if (a.out) {
            rc = write_file(a.out, quote, len);
        } else {
            char *hex = veil_hex_encode_alloc(quote, len);
            if (hex)
                puts(hex);
            free(hex);
        }
    }
    if (rc == CLI_OK && a.log_out)
        rc = write_file(a.log_out, log ? log : "[]", log ? strlen(log) : 2);
    free(quote);
    free(log);
    veil_provider_free(p);
    return rc;
}

static const cli_command commands[] = {
    {"quote", "", cmd_tee_quote},
    {"sim-root", "", cmd_sim_root},
    {"sim-collateral", "", cmd_sim_collateral},
};

int cmd_tee(int argc, char **argv) {
    return cli_dispatch("veil tee", commands, sizeof commands / sizeof commands[0], argc, argv, help);
}
