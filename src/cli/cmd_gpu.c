/* veil gpu: NVIDIA GPU evidence by hand: verify a payload or a report
 * locally, and produce evidence with NVML or the simulated GPU. */
#include <getopt.h>
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

static int parse_nonce(const char *hex, uint8_t out[32]) {
    size_t n;
    return veil_hex_decode(out, 32, &n, hex, strlen(hex), NULL) == VEIL_OK && n == 32;
}

/* FILE as evidence: a JSON payload or evidence list, or a hex SPDM report
 * as one item (its chain from chain_path, which need_chain requires).
 * Returns 1; after saying why, -1 when FILE cannot be read, else 0. */
static int load_evidence(const char *path, const char *chain_path, int need_chain, veil_gpu_payload *p) {
    memset(p, 0, sizeof *p);
    size_t len;
    uint8_t *data = cli_read_file(path, GPU_FILE_LIMIT, &len);
    if (!data) return -1;
    size_t tl = len;
    const char *t = cli_trim((const char *)data, &tl);
    veil_err err;
    int ok = 1;
    if (tl && (t[0] == '{' || t[0] == '[' || t[0] == '"')) {
        if (veil_gpu_payload_parse(t, tl, p, &err) != VEIL_OK) ok = (cli_fail_err("GPU evidence", &err), 0);
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
    static const struct option opts[] = {{"nonce", required_argument, NULL, 'n'},   {"at", required_argument, NULL, 'a'},
                                         {"rim-dir", required_argument, NULL, 'r'}, {"cert-chain", required_argument, NULL, 'c'},
                                         {"root", required_argument, NULL, 'R'},    {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    veil_gpu_verify_opts o;
    memset(&o, 0, sizeof o);
    uint8_t nonce[32];
    const char *chain = NULL, *root = NULL;
    int json = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'n':
            if (!parse_nonce(optarg, nonce)) return cli_usage_error("veil gpu --help", "--nonce takes 64 hex characters");
            o.nonce = nonce;
            break;
        case 'a':
            o.at = strtoll(optarg, &end, 10);
            if (*end || o.at <= 0) return cli_usage_error("veil gpu --help", "--at takes a Unix time");
            break;
        case 'r': o.rim_dir = optarg; break;
        case 'c': chain = optarg; break;
        case 'R': root = optarg; break;
        case 'j': json = 1; break;
        case 'h': help(); return CLI_OK;
        default: return cli_usage_error("veil gpu --help", "bad option '%s' for 'veil gpu verify'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("veil gpu --help", "veil gpu verify takes one FILE");
    veil_gpu_payload p;
    veil_err err;
    int rc = CLI_USAGE;
    uint8_t *root_der = NULL;
    if (load_evidence(argv[optind], chain, 1, &p) != 1) return CLI_USAGE;
    if (root) {
        size_t rl;
        uint8_t *pem = cli_read_file(root, GPU_FILE_LIMIT, &rl);
        BIO *bio = pem ? BIO_new_mem_buf(pem, (int)rl) : NULL;
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        int n = x ? i2d_X509(x, &root_der) : -1;
        X509_free(x), BIO_free(bio), free(pem);
        if (n <= 0) {
            veil_gpu_payload_clear(&p);
            return cli_usage_error("veil gpu --help", "--root must be a PEM certificate");
        }
        o.root_der = root_der;
        o.root_der_len = (size_t)n;
    }
    veil_gpu_verdict v;
    if (veil_gpu_verify(&p, &o, &v, &err) != VEIL_OK) {
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
                json_object_set_new(j, "measurements", json_pack("{s:b, s:i, s:i}", "match", it->measurements_ok,
                                                                 "compared", it->compared, "mismatches", it->mismatches));
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
        if (v.n) printf(" (%s, driver %s, VBIOS %s)", v.items[0].arch, v.items[0].driver_version, v.items[0].vbios_version);
        if (o.rim_dir && v.n) printf(", %d golden measurements matched", v.items[0].compared);
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
    if (!h) return json_null();
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
    json_t *req = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "SPDMVersion", byte_hex(r->req_version),
                            "RequestResponseCode", byte_hex(r->req_code), "Param1", byte_hex(r->req_param1), "Param2",
                            byte_hex(r->req_param2), "Nonce", hexj(r->req_nonce, 32), "SlotIDParam",
                            byte_hex(r->req_slot));
    json_t *blocks = json_object();
    for (unsigned i = 0; i < r->n_blocks; i++) {
        char k[8];
        snprintf(k, sizeof k, "%u", r->blocks[i].index);
        json_object_set_new(blocks, k, json_pack("{s:i, s:i, s:o}", "DMTFSpecMeasurementValueType",
                                                 r->blocks[i].value_type, "DMTFSpecMeasurementValueSize",
                                                 r->blocks[i].value_size, "DMTFSpecMeasurementValue",
                                                 hexj(r->blocks[i].value, r->blocks[i].value_size)));
    }
    json_t *fields = json_object();
    for (size_t i = 0; i < r->n_opaque; i++) {
        const veil_spdm_opaque *f = &r->opaque[i];
        const char *name = veil_spdm_opaque_name(f->type);
        char unknown[32];
        if (!name) snprintf(unknown, sizeof unknown, "OPAQUE_FIELD_ID_%u", f->type), name = unknown;
        if (f->type == 12 && f->size % 4 == 0) { /* MSRSCNT: a u32 counter per measurement */
            json_t *a = json_array();
            for (size_t k = 0; k < f->size; k += 4)
                json_array_append_new(a, json_integer((json_int_t)(f->value[k] | f->value[k + 1] << 8 |
                                                                   f->value[k + 2] << 16 | (uint32_t)f->value[k + 3] << 24)));
            json_object_set_new(fields, name, a);
        } else {
            json_object_set_new(fields, name, hexj(f->value, f->size));
        }
    }
    json_t *resp = json_pack("{s:o, s:o, s:o, s:o, s:i, s:i, s:o, s:i, s:o, s:{s:i, s:o}, s:{s:o}}", "SPDMVersion",
                             byte_hex(r->version), "RequestResponseCode", byte_hex(r->code), "Param1",
                             byte_hex(r->param1), "Param2", byte_hex(r->param2), "NumberOfBlocks", r->n_blocks,
                             "MeasurementRecordLength", (int)r->record_len, "Nonce", hexj(r->nonce, 32),
                             "OpaqueLength", r->opaque_len, "Signature", hexj(r->signature, 96), "MeasurementRecord",
                             "NumberOfBlocks", r->n_blocks, "MeasurementBlocks", blocks, "OpaqueData",
                             "OpaqueDataField", fields);
    return json_pack("{s:o, s:o, s:s, s:s}", "request", req, "response", resp, "driver_version", r->driver_version,
                     "vbios_version", r->vbios_version);
}

static int cmd_show(int argc, char **argv) {
    if (argc != 2) return cli_usage_error("veil gpu --help", "veil gpu show takes one FILE");
    veil_gpu_payload p;
    veil_err err;
    int loaded = load_evidence(argv[1], NULL, 0, &p);
    if (loaded < 0) return CLI_USAGE;
    int rc = loaded ? CLI_OK : CLI_FAIL;
    json_t *out = json_array();
    veil_spdm_report *r = malloc(sizeof *r);
    for (size_t i = 0; rc == CLI_OK && r && i < p.n; i++) {
        if (veil_spdm_parse(p.items[i].report, p.items[i].report_len, r, &err) != VEIL_OK) {
            rc = cli_fail_err("SPDM report", &err);
            break;
        }
        json_array_append_new(out, report_json(r));
    }
    if (rc == CLI_OK) {
        char *s = json_dumps(json_array_size(out) == 1 ? json_array_get(out, 0) : out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
    }
    free(r);
    json_decref(out);
    veil_gpu_payload_clear(&p);
    return rc;
}

static int cmd_evidence(int argc, char **argv) {
    static const struct option opts[] = {{"nonce", required_argument, NULL, 'n'}, {"gpu", required_argument, NULL, 'g'},
                                         {"state", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    uint8_t nonce[32];
    int have_nonce = 0, c;
    const char *gpu = "nvml", *state = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!parse_nonce(optarg, nonce)) return cli_usage_error("veil gpu --help", "--nonce takes 64 hex characters");
            have_nonce = 1;
            break;
        case 'g': gpu = optarg; break;
        case 's': state = optarg; break;
        case 'h': help(); return CLI_OK;
        default: return cli_usage_error("veil gpu --help", "bad option '%s' for 'veil gpu evidence'", argv[optind - 1]);
        }
    }
    if (!have_nonce || optind != argc) return cli_usage_error("veil gpu --help", "veil gpu evidence needs --nonce HEX");
    if (strcmp(gpu, "nvml") && strcmp(gpu, "sim")) return cli_usage_error("veil gpu --help", "--gpu must be nvml or sim");
    veil_gpu_provider *p = NULL;
    veil_err err;
    char info[600] = "";
    veil_rc rc;
    if (!strcmp(gpu, "sim")) {
        if (!state) state = cli_state_dir();
        if (!state) return cli_fail("no state directory: pass --state DIR");
        rc = veil_gpu_sim_open(&p, state, &err);
    } else {
        rc = veil_gpu_nvml_open(&p, info, sizeof info, &err);
        if (info[0]) fprintf(stderr, "veil: NVML: %s\n", info);
    }
    if (rc != VEIL_OK) return cli_fail_err("GPU", &err);
    veil_gpu_payload pl;
    rc = veil_gpu_provider_evidence(p, nonce, &pl, &err);
    veil_gpu_provider_free(p);
    if (rc != VEIL_OK) return cli_fail_err("GPU evidence", &err);
    char *s = veil_gpu_payload_json(&pl);
    veil_gpu_payload_clear(&pl);
    if (!s) return cli_fail("out of memory");
    puts(s);
    free(s);
    return CLI_OK;
}

static int cmd_sim_root(int argc, char **argv) {
    const char *state = argc == 3 && !strcmp(argv[1], "--state") ? argv[2] : cli_state_dir();
    if (argc != 1 && argc != 3) return cli_usage_error("veil gpu --help", "veil gpu sim-root [--state DIR]");
    if (!state) return cli_fail("no state directory: pass --state DIR");
    veil_gpu_provider *p;
    veil_err err;
    if (veil_gpu_sim_open(&p, state, &err) != VEIL_OK) return cli_fail_err("simulated GPU", &err);
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
