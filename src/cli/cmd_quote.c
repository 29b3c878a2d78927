/* veil quote: show and verify Intel TDX/SGX DCAP quotes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "veil/hex.h"
#include "veil/collateral.h"
#include "veil/eventlog.h"
#include "veil/policy.h"
#include "veil/quote.h"

#define QUOTE_FILE_LIMIT ((size_t)1 << 20)

static void help(void) {
    puts("Usage: veil quote <command> [options]\n"
         "\n"
         "Commands:\n"
         "  show FILE                     print the parsed fields of a quote as JSON\n"
         "  verify FILE [--collateral FILE] [--policy FILE] [--event-log FILE] [--root PEM]\n"
         "              [--at UNIX] [--json]\n"
         "                                verify the quote: signatures, PCK chain, and with\n"
         "                                collateral its TCB status, QE identity and CRLs\n"
         "\n"
         "FILE holds the quote in binary or as hex text (auto-detected; '-' is stdin).\n"
         "--root replaces the pinned Intel SGX Root CA (for test roots and the simulator);\n"
         "--at evaluates every validity window at that Unix time (default now).\n"
         "--collateral takes dcap-qvl's QuoteCollateralV3 JSON; --policy a policy JSON\n"
         "(allow_debug, accepted_tcb_statuses, require_collateral, min_tee_tcb_svn,\n"
         "td_attributes_allowed_mask and pins such as mrtd, rtmr0..rtmr3, report_data).\n"
         "--event-log takes a dstack JSON log or a binary CCEL log; every RTMR it has\n"
         "events for must equal its replay.\n"
         "Exit status: 0 accepted, 1 rejected, 2 usage or unreadable input.");
}

static uint8_t *read_file(const char *path, size_t *len) { return cli_read_file(path, QUOTE_FILE_LIMIT, len); }

static void put_hex(json_t *o, const char *key, const uint8_t *p, size_t n) {
    char *h = veil_hex_encode_alloc(p, n);
    json_object_set_new(o, key, json_string(h ? h : ""));
    free(h);
}

static json_t *quote_json(const veil_quote *q) {
    json_t *o = json_object();
    char tee[16];
    snprintf(tee, sizeof tee, "0x%x", q->tee_type);
    json_object_set_new(o, "version", json_integer(q->version));
    json_object_set_new(o, "att_key_type", json_integer(q->att_key_type));
    json_object_set_new(o, "tee_type", json_string(tee));
    json_object_set_new(o, "body_type", json_integer(q->body_type));
    put_hex(o, "qe_vendor_id", q->qe_vendor_id, 16);
    put_hex(o, "user_data", q->user_data, 20);
    if (q->body_type == VEIL_BODY_SGX) {
        const veil_enclave_report *r = &q->enclave;
        put_hex(o, "cpu_svn", r->cpu_svn, 16);
        json_object_set_new(o, "misc_select", json_integer(r->misc_select));
        put_hex(o, "attributes", r->attributes, 16);
        json_object_set_new(o, "enclave_debug", json_boolean(r->attributes[0] & 0x02));
        put_hex(o, "mr_enclave", r->mr_enclave, 32);
        put_hex(o, "mr_signer", r->mr_signer, 32);
        json_object_set_new(o, "isv_prod_id", json_integer(r->isv_prod_id));
        json_object_set_new(o, "isv_svn", json_integer(r->isv_svn));
        put_hex(o, "report_data", r->report_data, 64);
    } else {
        const veil_td_report *t = &q->td;
        put_hex(o, "tee_tcb_svn", t->tee_tcb_svn, 16);
        put_hex(o, "mr_seam", t->mr_seam, 48);
        put_hex(o, "mr_signer_seam", t->mr_signer_seam, 48);
        put_hex(o, "seam_attributes", t->seam_attributes, 8);
        put_hex(o, "td_attributes", t->td_attributes, 8);
        json_object_set_new(o, "td_debug", json_boolean(t->td_attributes[0] & 0x01));
        put_hex(o, "xfam", t->xfam, 8);
        put_hex(o, "mr_td", t->mr_td, 48);
        put_hex(o, "mr_config_id", t->mr_config_id, 48);
        put_hex(o, "mr_owner", t->mr_owner, 48);
        put_hex(o, "mr_owner_config", t->mr_owner_config, 48);
        static const char *rtmr[] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3"};
        for (int i = 0; i < 4; i++)
            put_hex(o, rtmr[i], t->rtmr[i], 48);
        put_hex(o, "report_data", t->report_data, 64);
        if (q->body_type == VEIL_BODY_TD15) {
            put_hex(o, "tee_tcb_svn2", t->tee_tcb_svn2, 16);
            put_hex(o, "mr_service_td", t->mr_service_td, 48);
        }
    }
    json_object_set_new(o, "sig_data_len", json_integer(q->sig_data_len));
    json_object_set_new(o, "trailing_bytes", json_integer((json_int_t)q->trailing_len));
    json_object_set_new(o, "outer_cert_type", json_integer(q->version == 3 ? q->chain_type : q->cert_type));
    json_object_set_new(o, "inner_cert_type", json_integer(q->chain_type));
    json_object_set_new(o, "qe_auth_data_len", json_integer(q->qe_auth_len));
    put_hex(o, "qe_mrsigner", q->qe_report.mr_signer, 32);
    json_object_set_new(o, "qe_isvprodid", json_integer(q->qe_report.isv_prod_id));
    json_object_set_new(o, "qe_isvsvn", json_integer(q->qe_report.isv_svn));
    put_hex(o, "attestation_key", q->attest_key, 64);
    return o;
}

/* Loads and parses FILE; on failure prints why and returns the exit status
 * in *status (2: unreadable, 1: not a valid quote). */
static uint8_t *load_quote(const char *path, veil_quote *q, veil_quote_code *why, int *status) {
    size_t file_len, len;
    uint8_t *file = read_file(path, &file_len), *buf = NULL;
    *status = CLI_USAGE;
    if (!file)
        return NULL;
    veil_err err;
    veil_rc rc = veil_quote_load(&buf, &len, file, file_len, &err);
    free(file);
    if (rc != VEIL_OK) {
        cli_fail_err(path, &err);
        return NULL;
    }
    if (veil_quote_parse(q, buf, len, why, &err) != VEIL_OK) {
        *status = CLI_FAIL;
        cli_fail("%s: %s (%s)", path, err.message, veil_quote_code_name(*why));
        return buf;
    }
    *status = CLI_OK;
    return buf;
}

static int cmd_show(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("Usage: veil quote show FILE");
        return CLI_OK;
    }
    if (argc != 2)
        return cli_usage_error("veil quote --help", "'veil quote show' takes one FILE");
    veil_quote q;
    veil_quote_code why;
    int status;
    uint8_t *buf = load_quote(argv[1], &q, &why, &status);
    if (status == CLI_OK) {
        json_t *o = quote_json(&q);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    }
    free(buf);
    return status;
}

/* Reads a PEM (or DER) certificate file as the trusted root. */
static int load_root(const char *path, veil_quote_options *opts, uint8_t **der_out) {
    size_t n;
    int rc = cli_load_cert_der(path, der_out, &n, "veil quote --help");
    if (rc != CLI_OK)
        return rc;
    EVP_Digest(*der_out, n, opts->root_sha256, NULL, EVP_sha256(), NULL);
    opts->root_der = *der_out;
    opts->root_der_len = n;
    return CLI_OK;
}

static void put_verdict(json_t *o, const veil_quote_verdict *v) {
    json_object_set_new(o, "accepted", json_boolean(v->code == VEIL_QUOTE_OK));
    json_object_set_new(o, "code", json_string(veil_quote_code_name(v->code)));
    json_object_set_new(o, "message", json_string(v->message));
    json_object_set_new(o, "tcb_status", v->tcb_status[0] ? json_string(v->tcb_status) : json_null());
    json_t *ids = json_array();
    for (size_t i = 0; i < v->n_advisories; i++)
        json_array_append_new(ids, json_string(v->advisory_ids[i]));
    json_object_set_new(o, "advisory_ids", ids);
    json_object_set_new(o, "collateral_expired", json_boolean(v->collateral_expired));
}

static void put_pck(json_t *o, const veil_quote_verdict *v) {
    if (!v->has_pck)
        return;
    put_hex(o, "fmspc", v->pck.fmspc, 6);
    put_hex(o, "pce_id", v->pck.pceid, 2);
    json_object_set_new(o, "pce_svn", json_integer(v->pck.pcesvn));
    put_hex(o, "cpu_svn", v->pck.cpusvn, 16);
    put_hex(o, "ppid", v->pck.ppid, 16);
}

static int cmd_verify(int argc, char **argv) {
    veil_quote_options opts;
    veil_quote_options_init(&opts);
    const char *root = NULL, *collateral_path = NULL, *policy_path = NULL, *log_path = NULL;
    int json = 0;
    const cli_opt table[] = {
        OPT_STR("collateral", &collateral_path, "FILE", "dcap-qvl's QuoteCollateralV3 JSON"),
        OPT_STR("policy", &policy_path, "FILE", "a policy JSON"),
        OPT_STR("event-log", &log_path, "FILE", "a dstack JSON log or a binary CCEL log"),
        OPT_STR("root", &root, "PEM", "replace the pinned Intel SGX Root CA (test roots, the simulator)"),
        OPT_TIME("at", &opts.at, "evaluate every validity window at this time (default now)"),
        OPT_FLAG("json", &json, "print the verdict as JSON"),
    };
    const cli_spec spec = CLI_SPEC("veil quote", "veil quote verify FILE [options]", NULL, table);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc == CLI_HELP)
        help(); /* the group's help explains the inputs */
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    if (pos != argc - 1)
        return cli_usage_error("veil quote --help", "'veil quote verify' takes one FILE");
    int status = CLI_OK;
    uint8_t *root_der = NULL, *buf = NULL;
    veil_collateral *collateral = NULL;
    veil_event_log *event_log = NULL;
    veil_quote_policy policy;
    veil_err err;
    size_t n;
    if (root)
        status = load_root(root, &opts, &root_der);
    if (status == CLI_OK && policy_path &&
        (status = cli_load_policy(policy_path, &policy, "veil quote --help")) == CLI_OK)
        opts.policy = &policy;
    if (status == CLI_OK && collateral_path &&
        (status = cli_load_collateral(collateral_path, &collateral, "veil quote --help")) == CLI_OK)
        opts.collateral = collateral;
    if (status == CLI_OK && log_path) {
        uint8_t *data = read_file(log_path, &n);
        if (!data)
            status = CLI_USAGE;
        else if (veil_event_log_parse(&event_log, data, n, &err) != VEIL_OK)
            status = cli_usage_error("veil quote --help", "%s: %s", log_path, err.message);
        else
            opts.event_log = event_log;
        free(data);
    }
    veil_quote q;
    veil_quote_code why = VEIL_QUOTE_OK;
    if (status == CLI_OK)
        buf = load_quote(argv[pos], &q, &why, &status);
    veil_quote_verdict v;
    if (status == CLI_OK) {
        if (veil_quote_verify(&v, &q, &opts, &err) != VEIL_OK) {
            status = cli_fail_err("verify", &err);
        } else {
            status = v.code == VEIL_QUOTE_OK ? CLI_OK : CLI_FAIL;
            if (json) {
                json_t *o = json_object(), *qj = quote_json(&q);
                put_verdict(o, &v);
                put_pck(qj, &v);
                json_object_set_new(o, "quote", qj);
                json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                putchar('\n');
                json_decref(o);
            } else {
                if (v.code == VEIL_QUOTE_OK)
                    printf("accepted: %s\n", v.message);
                else
                    printf("rejected: %s: %s\n", veil_quote_code_name(v.code), v.message);
                if (v.tcb_status[0]) {
                    printf("tcb_status: %s\n", v.tcb_status);
                    for (size_t i = 0; i < v.n_advisories; i++)
                        printf("advisory: %s\n", v.advisory_ids[i]);
                }
                if (v.collateral_expired)
                    printf("collateral_expired: true\n");
            }
        }
    } else if (status == CLI_FAIL && json) {
        json_t *o = json_object();
        memset(&v, 0, sizeof v);
        v.code = why;
        snprintf(v.message, sizeof v.message, "quote could not be parsed");
        put_verdict(o, &v);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    }
    free(buf);
    veil_collateral_free(collateral);
    veil_event_log_free(event_log);
    OPENSSL_free(root_der);
    return status;
}

static const cli_command commands[] = {
    {"show", "", cmd_show},
    {"verify", "", cmd_verify},
};

int cmd_quote(int argc, char **argv) {
    return cli_dispatch("veil quote", commands, sizeof commands / sizeof commands[0], argc, argv, help);
}
