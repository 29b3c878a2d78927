/* veil gpu: NVIDIA GPU evidence by hand: verify a payload or a report
 * locally, and produce evidence with NVML or the simulated GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "veil/hex.h"
#include "veil/nvidia.h"

#define GPU_FILE_LIMIT (16u << 20)

static void help(void) {
    puts("Usage: veil gpu <command> [options]\n"
         "\n"
         "Commands:\n"
         "  verify FILE [--nonce HEX] [--at UNIX] [--rim-dir DIR] [--cert-chain PEM] [--root PEM] [--json]\n"
         "        FILE is an nvidia_payload ({nonce, evidence_list, arch}, or that as a JSON string), an\n"
         "        evidence list [{arch, certificate, evidence, nonce}], or a hex SPDM report with\n"
         "        --cert-chain. Checks each report's P-384 signature, its chain to the pinned NVIDIA\n"
         "        Device Identity CA (--root: trust this PEM root instead, e.g. the simulator's) at\n"
         "        --at (default now), the request nonce (--nonce, else the payload's), and with\n"
         "        --rim-dir the measurements against the driver and VBIOS RIMs found there.\n"
         "        Exit 0 accepted, 1 rejected (NONCE_MISMATCH, SIGNATURE_INVALID, CHAIN_INVALID,\n"
         "        ROOT_NOT_TRUSTED, CERT_EXPIRED, MEASUREMENT_MISMATCH, MALFORMED), 2 usage.\n"
         "  show FILE             the parsed SPDM request and response of a hex report (or of each\n"
         "        report of a payload) as JSON, in the shape of NVIDIA's SDK parse output\n"
         "  evidence --nonce HEX [--gpu nvml|sim] [--state DIR]\n"
         "        evidence from this machine's GPUs (NVML) or the simulated GPU, as an nvidia_payload;\n"
         "        what NVML reports goes to stderr\n"
         "  sim-root [--state DIR]   the simulated GPU's root certificate (PEM)");
}

/* FILE as evidence: a JSON payload or evidence list, or a hex SPDM report
 * as one item (its chain from chain_path, which need_chain requires).
 * Returns 1; after saying why, -1 when FILE cannot be read, else 0. */
static int load_evidence(const char *path, const char *chain_path, int need_chain, veil_gpu_payload *p) {
    memset(p, 0, sizeof *p);
    size_t len;
    uint8_t *data = cli_read_file(path, GPU_FILE_LIMIT, &len);
    if (!data)
        return -1;
    size_t tl = len;
    const char *t = cli_trim((const char *)data, &tl);
    veil_err err;
    int ok = 1;
    if (tl && (t[0] == '{' || t[0] == '[' || t[0] == '"')) {
        if (veil_gpu_payload_parse(p, t, tl, &err) != VEIL_OK)
            ok = (cli_fail_err("GPU evidence", &err), 0);
    } else if (need_chain && !chain_path) {
        ok = (cli_usage_error("veil gpu --help", "a hex report needs --cert-chain PEM"), 0);
    } else {
        uint8_t *rep = malloc(tl / 2 + 1), *chain = NULL;
        size_t rl, cl = 0;
        p->items = calloc(1, sizeof *p->items);
        if (!rep || !p->items || veil_hex_decode(rep, tl / 2 + 1, &rl, t, tl, NULL) != VEIL_OK)
            ok = (cli_fail("the report is neither JSON nor hex"), 0);
        else if (chain_path && !(chain = cli_read_file(chain_path, GPU_FILE_LIMIT, &cl)))
            ok = 0;
        if (ok) {
            snprintf(p->arch, sizeof p->arch, "HOPPER");
            p->items[0] = (veil_gpu_evidence){"HOPPER", rep, rl, chain, cl};
            p->n = 1;
        } else {
            free(rep);
            veil_gpu_payload_clear(p);
        }
    }
    free(data);
    return ok;
}

static int cmd_verify(int argc, char **argv) {
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    cli_hex32 nonce = {0};
    const char *chain = NULL, *root = NULL;
    int json = 0;
    const cli_opt opts[] = {
        OPT_HEX32("nonce", &nonce, "the request nonce (default: the payload's)"),
        OPT_TIME("at", &o.at, "evaluate validity at this time (default now)"),
        OPT_STR("rim-dir", &o.rim_dir, "DIR", "compare measurements with the driver and VBIOS RIMs found here"),
        OPT_STR("cert-chain", &chain, "PEM", "the chain of a hex SPDM report"),
        OPT_STR("root", &root, "PEM", "trust this root instead of NVIDIA's (e.g. the simulator's)"),
        OPT_FLAG("json", &json, "print the verdict as JSON"),
    };
    const cli_spec spec = CLI_SPEC("veil gpu", "veil gpu verify FILE [options]", NULL, opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    if (nonce.set)
        o.nonce = nonce.bytes;
    if (pos + 1 != argc)
        return cli_usage_error("veil gpu --help", "veil gpu verify takes one FILE");
    veil_gpu_payload p;
    veil_err err;
    int rc = CLI_USAGE;
    uint8_t *root_der = NULL;
    if (load_evidence(argv[pos], chain, 1, &p) != 1)
        return CLI_USAGE;
    if (root && cli_load_cert_der(root, &root_der, &o.root_der_len, "veil gpu --help") != CLI_OK) {
        veil_gpu_payload_clear(&p);
        return CLI_USAGE;
    }
    o.root_der = root_der;
    veil_gpu_verdict v;
    if (veil_gpu_verify(&v, &p, &o, &err) != VEIL_OK) {
        rc = cli_fail_err("GPU verification", &err);
        goto done;
    }
    if (json) {
        json_t *items = json_array();
        for (size_t i = 0; i < v.n; i++) {
            veil_gpu_item_verdict *it = &v.items[i];
            json_t *j = json_pack("{s:s, s:b, s:b, s:b, s:s, s:s, s:o}", "arch", it->arch, "signature_valid",
                                  it->signature_ok, "chain_valid", it->chain_ok, "nonce_match", it->nonce_ok,
                                  "driver_version", it->driver_version, "vbios_version", it->vbios_version, "code",
                                  it->code ? json_string(it->code) : json_null());
            if (o.rim_dir)
                json_object_set_new(j, "measurements",
                                    json_pack("{s:b, s:i, s:i}", "match", it->measurements_ok, "compared", it->compared,
                                              "mismatches", it->mismatches));
            json_array_append_new(items, j);
        }
        json_t *out = json_pack("{s:b, s:o, s:s, s:o}", "accepted", v.accepted, "code",
                                v.code ? json_string(v.code) : json_null(), "message", v.accepted ? "" : v.message,
                                "evidence", items);
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(out);
    } else if (v.accepted) {
        printf("accepted: %zu evidence item%s", v.n, v.n == 1 ? "" : "s");
        if (v.n)
            printf(" (%s, driver %s, VBIOS %s)", v.items[0].arch, v.items[0].driver_version, v.items[0].vbios_version);
        if (o.rim_dir && v.n)
            printf(", %d golden measurements matched", v.items[0].compared);
        putchar('\n');
    } else {
        fprintf(stderr, "veil: rejected: %s: %s\n", v.code, v.message);
    }
    rc = v.accepted ? CLI_OK : CLI_FAIL;
    veil_gpu_verdict_clear(&v);
done:
    OPENSSL_free(root_der);
    veil_gpu_payload_clear(&p);
    return rc;
}

static json_t *hexj(const uint8_t *p, size_t n) {
    char *h = malloc(2 * n + 3);
    if (!h)
        return json_null();
    memcpy(h, "0x", 2);
    veil_hex_encode(h + 2, p, n);
    json_t *j = json_string(h);
    free(h);
    return j;
}

static json_t *byte_hex(uint8_t b) { return hexj(&b, 1); }

/* A parsed report in the shape of NVIDIA's SDK parse output
 * (spdm_req_parsed_output.json, spdm_parsed_output.json). */
static json_t *report_json(const veil_spdm_report *r) {
    json_t *req =
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "SPDMVersion", byte_hex(r->req_version), "RequestResponseCode",
                  byte_hex(r->req_code), "Param1", byte_hex(r->req_param1), "Param2", byte_hex(r->req_param2), "Nonce",
                  hexj(r->req_nonce, 32), "SlotIDParam", byte_hex(r->req_slot));
    json_t *blocks = json_object();
    for (unsigned i = 0; i < r->n_blocks; i++) {
        char k[8];
        snprintf(k, sizeof k, "%u", r->blocks[i].index);
        json_object_set_new(blocks, k,
                            json_pack("{s:i, s:i, s:o}", "DMTFSpecMeasurementValueType", r->blocks[i].value_type,
                                      "DMTFSpecMeasurementValueSize", r->blocks[i].value_size,
                                      "DMTFSpecMeasurementValue", hexj(r->blocks[i].value, r->blocks[i].value_size)));
    }
    json_t *fields = json_object();
    for (size_t i = 0; i < r->n_opaque; i++) {
        const veil_spdm_opaque *f = &r->opaque[i];
        const char *name = veil_spdm_opaque_name(f->type);
        char unknown[32];
        if (!name)
            snprintf(unknown, sizeof unknown, "OPAQUE_FIELD_ID_%u", f->type), name = unknown;
        if (f->type == 12 && f->size % 4 == 0) { /* MSRSCNT: a u32 counter per measurement */
            json_t *a = json_array();
            for (size_t k = 0; k < f->size; k += 4)
                json_array_append_new(
                    a, json_integer((json_int_t)(f->value[k] | f->value[k + 1] << 8 | f->value[k + 2] << 16 |
                                                 (uint32_t)f->value[k + 3] << 24)));
            json_object_set_new(fields, name, a);
        } else {
            json_object_set_new(fields, name, hexj(f->value, f->size));
        }
    }
    json_t *resp = json_pack("{s:o, s:o, s:o, s:o, s:i, s:i, s:o, s:i, s:o, s:{s:i, s:o}, s:{s:o}}", "SPDMVersion",
                             byte_hex(r->version), "RequestResponseCode", byte_hex(r->code), "Param1",
                             byte_hex(r->param1), "Param2", byte_hex(r->param2), "NumberOfBlocks", r->n_blocks,
                             "MeasurementRecordLength", (int)r->record_len, "Nonce", hexj(r->nonce, 32), "OpaqueLength",
                             r->opaque_len, "Signature", hexj(r->signature, 96), "MeasurementRecord", "NumberOfBlocks",
                             r->n_blocks, "MeasurementBlocks", blocks, "OpaqueData", "OpaqueDataField", fields);
    return json_pack("{s:o, s:o, s:s, s:s}", "request", req, "response", resp, "driver_version", r->driver_version,
                     "vbios_version", r->vbios_version);
}

static int cmd_show(int argc, char **argv) {
    if (argc != 2)
        return cli_usage_error("veil gpu --help", "veil gpu show takes one FILE");
    veil_gpu_payload p;
    veil_err err;
    int loaded = load_evidence(argv[1], NULL, 0, &p);
    if (loaded < 0)
        return CLI_USAGE;
    int rc = loaded ? CLI_OK : CLI_FAIL;
    json_t *out = json_array();
    veil_spdm_report *r = malloc(sizeof *r);
    for (size_t i = 0; rc == CLI_OK && r && i < p.n; i++) {
        if (veil_spdm_parse(r, p.items[i].report, p.items[i].report_len, &err) != VEIL_OK) {
            rc = cli_fail_err("SPDM report", &err);
            break;
        }
        json_array_append_new(out, report_json(r));
    }
    if (rc == CLI_OK) {
        char *s =
            json_dumps(json_array_size(out) == 1 ? json_array_get(out, 0) : out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
    }
    free(r);
    json_decref(out);
    veil_gpu_payload_clear(&p);
    return rc;
}

static int cmd_evidence(int argc, char **argv) {
    cli_hex32 nonce = {0};
    const char *gpu = "nvml", *state = NULL;
    const cli_opt opts[] = {
        OPT_HEX32("nonce", &nonce, "the nonce the evidence binds (required)"),
        OPT_CHOICE("gpu", &gpu, "nvml|sim", "this machine's GPUs (default) or the simulated GPU"),
        OPT_STR("state", &state, "DIR", "state directory of the simulated GPU"),
    };
    const cli_spec spec = CLI_SPEC("veil gpu", "veil gpu evidence --nonce HEX [options]", NULL, opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    if (!nonce.set || pos != argc)
        return cli_usage_error("veil gpu --help", "veil gpu evidence needs --nonce HEX");
    veil_gpu_provider *p = NULL;
    veil_err err;
    char info[600] = "";
    veil_rc rc;
    if (!strcmp(gpu, "sim")) {
        if (!state)
            state = cli_state_dir();
        if (!state)
            return cli_fail("no state directory: pass --state DIR");
        rc = veil_gpu_sim_open(&p, state, &err);
    } else {
        rc = veil_gpu_nvml_open(&p, info, sizeof info, &err);
        if (info[0])
            fprintf(stderr, "veil: NVML: %s\n", info);
    }
    if (rc != VEIL_OK)
        return cli_fail_err("GPU", &err);
    veil_gpu_payload pl;
    rc = veil_gpu_provider_evidence(p, &pl, nonce.bytes, &err);
    veil_gpu_provider_free(p);
    if (rc != VEIL_OK)
        return cli_fail_err("GPU evidence", &err);
    char *s = veil_gpu_payload_json(&pl);
    veil_gpu_payload_clear(&pl);
    if (!s)
        return cli_fail("out of memory");
    puts(s);
    free(s);
    return CLI_OK;
}

static int cmd_sim_root(int argc, char **argv) {
    const char *state = NULL;
    const cli_opt opts[] = {OPT_STR("state", &state, "DIR", "state directory of the simulated GPU")};
    const cli_spec spec = CLI_SPEC("veil gpu", "veil gpu sim-root [--state DIR]", NULL, opts);
    int pos, prc = cli_parse(&spec, argc, argv, &pos);
    if (prc != CLI_OK)
        return prc == CLI_HELP ? CLI_OK : prc;
    if (pos != argc)
        return cli_usage_error("veil gpu --help", "veil gpu sim-root [--state DIR]");
    if (!state)
        state = cli_state_dir();
    if (!state)
        return cli_fail("no state directory: pass --state DIR");
    veil_gpu_provider *p;
    veil_err err;
    if (veil_gpu_sim_open(&p, state, &err) != VEIL_OK)
        return cli_fail_err("simulated GPU", &err);
    size_t n;
    const uint8_t *der = veil_gpu_sim_root(p, &n);
    const unsigned char *q = der;
    X509 *x = d2i_X509(NULL, &q, (long)n);
    int ok = x && PEM_write_X509(stdout, x);
    X509_free(x);
    veil_gpu_provider_free(p);
    return ok ? CLI_OK : cli_fail("cannot write the root");
}

int cmd_gpu(int argc, char **argv) {
    static const cli_command cmds[] = {
        {"verify", "verify GPU evidence locally", cmd_verify},
        {"show", "a report's parsed fields", cmd_show},
        {"evidence", "GPU evidence from NVML or the simulator", cmd_evidence},
        {"sim-root", "the simulated GPU's root certificate", cmd_sim_root},
    };
    return cli_dispatch("veil gpu", cmds, sizeof cmds / sizeof cmds[0], argc, argv, help);
}
