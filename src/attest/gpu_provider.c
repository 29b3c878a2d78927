/* Producers of GPU evidence: NVML on a real GPU (libnvidia-ml.so.1 loaded
 * at run time, so veil has no link-time dependency on the driver), and a
 * simulated GPU that signs SPDM-shaped reports with its own P-384 chain. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "veil/nvidia.h"
#include "x509.h"

/* NVML's types, as nvml.h declares them (r535 and later). */
typedef int nvml_ret;
typedef void *nvml_dev;
typedef struct {
    unsigned environment, ccFeature, devToolsMode;
} nvml_cc_state;
typedef struct {
    unsigned isCecAttestationReportPresent, attestationReportSize, cecAttestationReportSize;
    unsigned char nonce[0x20];
    unsigned char attestationReport[0x2000];
    unsigned char cecAttestationReport[0x1000];
} nvml_cc_report;
typedef struct {
    unsigned certChainSize, attestationCertChainSize;
    unsigned char certChain[0x1000];
    unsigned char attestationCertChain[0x1400];
} nvml_cc_cert;

#define MAX_GPUS 16

struct veil_gpu_provider {
    int sim;
    /* NVML */
    void *lib;
    nvml_ret (*shutdown)(void);
    const char *(*error_string)(nvml_ret);
    nvml_ret (*get_report)(nvml_dev, nvml_cc_report *);
    nvml_ret (*get_cert)(nvml_dev, nvml_cc_cert *);
    nvml_dev dev[MAX_GPUS];
    unsigned n_dev;
    /* simulated */
    EVP_PKEY *root_key, *leaf_key;
    X509 *root, *leaf;
    uint8_t *root_der;
    size_t root_der_len;
};

void veil_gpu_provider_free(veil_gpu_provider *p) {
    if (!p)
        return;
    if (p->lib) {
        if (p->shutdown)
            p->shutdown();
        dlclose(p->lib);
    }
    EVP_PKEY_free(p->root_key);
    EVP_PKEY_free(p->leaf_key);
    X509_free(p->root);
    X509_free(p->leaf);
    OPENSSL_free(p->root_der);
    free(p);
}

int veil_gpu_provider_simulated(const veil_gpu_provider *p) { return p->sim; }

const uint8_t *veil_gpu_sim_root(const veil_gpu_provider *p, size_t *len) {
    *len = p->root_der_len;
    return p->root_der;
}

/* ---- NVML ---- */

veil_rc veil_gpu_nvml_open(veil_gpu_provider **out, char *info, size_t info_cap, veil_err *err) {
    *out = NULL;
    if (info && info_cap)
        info[0] = 0;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return veil_err_set(err, VEIL_ERR_IO, "NVML: cannot load libnvidia-ml.so.1 (no NVIDIA driver): %s", dlerror());
    veil_gpu_provider *p = calloc(1, sizeof *p);
    if (!p) {
        dlclose(lib);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    p->lib = lib;
    nvml_ret (*init)(void) = (nvml_ret(*)(void))dlsym(lib, "nvmlInit_v2");
    nvml_ret (*driver)(char *, unsigned) = (nvml_ret(*)(char *, unsigned))dlsym(lib, "nvmlSystemGetDriverVersion");
    nvml_ret (*count)(unsigned *) = (nvml_ret(*)(unsigned *))dlsym(lib, "nvmlDeviceGetCount_v2");
    nvml_ret (*handle)(unsigned, nvml_dev *) =
        (nvml_ret(*)(unsigned, nvml_dev *))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_ret (*name)(nvml_dev, char *, unsigned) =
        (nvml_ret(*)(nvml_dev, char *, unsigned))dlsym(lib, "nvmlDeviceGetName");
    nvml_ret (*cc_state)(nvml_cc_state *) = (nvml_ret(*)(nvml_cc_state *))dlsym(lib, "nvmlSystemGetConfComputeState");
    p->shutdown = (nvml_ret(*)(void))dlsym(lib, "nvmlShutdown");
    p->error_string = (const char *(*)(nvml_ret))dlsym(lib, "nvmlErrorString");
    p->get_report = (nvml_ret(*)(nvml_dev, nvml_cc_report *))dlsym(lib, "nvmlDeviceGetConfComputeGpuAttestationReport");
    p->get_cert = (nvml_ret(*)(nvml_dev, nvml_cc_cert *))dlsym(lib, "nvmlDeviceGetConfComputeGpuCertificate");
    if (!init || !driver || !count || !handle || !name || !p->error_string) {
        p->shutdown = NULL;
        veil_gpu_provider_free(p);
        return veil_err_set(err, VEIL_ERR_IO, "NVML: libnvidia-ml.so.1 lacks the basic entry points");
    }
    nvml_ret r = init();
    if (r != 0) {
        const char *s = p->error_string(r);
        p->shutdown = NULL;
        veil_gpu_provider_free(p);
        return veil_err_set(err, VEIL_ERR_IO, "NVML: initialization failed: %s", s ? s : "?");
    }
    char drv[96] = "?", names[400] = "";
    driver(drv, sizeof drv);
    unsigned n = 0;
    count(&n);
    size_t o = 0;
    for (unsigned i = 0; i < n && i < MAX_GPUS; i++) {
        char nm[96] = "?";
        if (handle(i, &p->dev[p->n_dev]) == 0) {
            name(p->dev[p->n_dev], nm, sizeof nm);
            p->n_dev++;
        }
        o += (size_t)snprintf(names + o, o < sizeof names ? sizeof names - o : 0, "%s%s", i ? ", " : "", nm);
        if (o >= sizeof names)
            o = sizeof names - 1;
    }
    nvml_cc_state cc = {0, 0, 0};
    nvml_ret rc_cc = cc_state ? cc_state(&cc) : -1;
    static const char *const envs[] = {"none", "simulated", "hardware"};
    char ccs[160];
    if (!cc_state)
        snprintf(ccs, sizeof ccs, "not reported (this driver's NVML has no confidential-computing API)");
    else if (rc_cc != 0)
        snprintf(ccs, sizeof ccs, "query failed: %s", p->error_string(rc_cc));
    else
        snprintf(ccs, sizeof ccs, "feature %s, environment %s, dev tools %s", cc.ccFeature ? "on" : "off",
                 cc.environment < 3 ? envs[cc.environment] : "?", cc.devToolsMode ? "on" : "off");
    if (info)
        snprintf(info, info_cap, "driver %s, %u GPU%s (%s), confidential computing: %s", drv, n, n == 1 ? "" : "s",
                 names, ccs);
    if (p->n_dev == 0) {
        veil_gpu_provider_free(p);
        return veil_err_set(err, VEIL_ERR_IO, "NVML: no GPU (driver %s)", drv);
    }
    if (!p->get_report || !p->get_cert || rc_cc != 0 || !cc.ccFeature) {
        veil_gpu_provider_free(p);
        return veil_err_set(err, VEIL_ERR_IO,
                            "NVML: the GPU is not in confidential-computing mode (%s), so it cannot produce "
                            "attestation evidence",
                            ccs);
    }
    *out = p;
    return VEIL_OK;
}

static veil_rc nvml_evidence(veil_gpu_provider *p, const uint8_t nonce[32], veil_gpu_payload *out, veil_err *err) {
    nvml_cc_report *rep = malloc(sizeof *rep);
    nvml_cc_cert *cert = malloc(sizeof *cert);
    out->items = calloc(p->n_dev, sizeof *out->items);
    veil_rc rc = VEIL_OK;
    if (!rep || !cert || !out->items) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (unsigned i = 0; i < p->n_dev; i++) {
        memset(rep, 0, sizeof *rep);
        memset(cert, 0, sizeof *cert);
        memcpy(rep->nonce, nonce, 32);
        nvml_ret r = p->get_report(p->dev[i], rep);
        if (r == 0)
            r = p->get_cert(p->dev[i], cert);
        if (r != 0) {
            rc = veil_err_set(err, VEIL_ERR_IO, "NVML: GPU %u gave no attestation evidence: %s", i, p->error_string(r));
            goto done;
        }
        if (rep->attestationReportSize > sizeof rep->attestationReport ||
            cert->attestationCertChainSize > sizeof cert->attestationCertChain) {
            rc = veil_err_set(err, VEIL_ERR_MALFORMED, "NVML: GPU %u reported impossible sizes", i);
            goto done;
        }
        veil_gpu_evidence *e = &out->items[out->n++];
        snprintf(e->arch, sizeof e->arch, "HOPPER");
        e->report = malloc(rep->attestationReportSize + 1);
        e->chain = malloc(cert->attestationCertChainSize + 1);
        if (!e->report || !e->chain) {
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(e->report, rep->attestationReport, rep->attestationReportSize);
        e->report_len = rep->attestationReportSize;
        memcpy(e->chain, cert->attestationCertChain, cert->attestationCertChainSize);
        e->chain_len = cert->attestationCertChainSize;
    }
done:
    free(rep);
    free(cert);
    return rc;
}

/* ---- the simulated GPU ---- */

static X509 *sim_cert(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, const char *cn, int ca, int years) {
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    int ok = x && name && RAND_bytes(serial, sizeof serial) == 1;
    serial[0] &= 0x7f;
    ok = ok && (bn = BN_bin2bn(serial, sizeof serial, NULL)) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
         X509_set_version(x, 2) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"veil simulation", -1, -1, 0) &&
         X509_set_subject_name(x, name) && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) &&
         X509_gmtime_adj(X509_getm_notBefore(x), -86400) &&
         X509_gmtime_adj(X509_getm_notAfter(x), (long)years * 365 * 86400) && X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
                             {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
                             {"subjectKeyIdentifier", "hash"}};
    for (size_t i = 0; ok && i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        ok = e && X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    ok = ok && X509_sign(x, issuer_key, EVP_sha384()) > 0;
    BN_free(bn);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Loads key and certificate `base` from dir, or makes and stores them. */
static int sim_identity(veil_gpu_provider *p, const char *dir, const char *base, int is_root, veil_err *err) {
    char kpath[4200], cpath[4200];
    snprintf(kpath, sizeof kpath, "%s/%s.key", dir, base);
    snprintf(cpath, sizeof cpath, "%s/%s.crt", dir, base);
    EVP_PKEY **key = is_root ? &p->root_key : &p->leaf_key;
    X509 **cert = is_root ? &p->root : &p->leaf;
    FILE *kf = fopen(kpath, "r"), *cf = fopen(cpath, "r");
    if (kf && cf) {
        *key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
        *cert = PEM_read_X509(cf, NULL, NULL, NULL);
    }
    int existed = kf || cf;
    if (kf)
        fclose(kf);
    if (cf)
        fclose(cf);
    if (*key && *cert)
        return 1;
    if (existed) {
        veil_err_set(err, VEIL_ERR_IO, "simulated GPU: %s or %s is unreadable; remove both to make new ones", kpath,
                     cpath);
        return 0;
    }
    *key = EVP_EC_gen("P-384");
    *cert = *key ? sim_cert(*key, is_root ? *key : p->root_key, is_root ? NULL : p->root,
                            is_root ? "veil simulated NVIDIA Device Identity CA" : "veil simulated GPU attestation key",
                            is_root, is_root ? 20 : 5)
                 : NULL;
    if (!*cert) {
        veil_err_set(err, VEIL_ERR_CRYPTO, "simulated GPU: cannot make its certificates");
        return 0;
    }
    mode_t old = umask(077);
    kf = fopen(kpath, "w");
    cf = fopen(cpath, "w");
    umask(old);
    int ok = kf && cf && PEM_write_PrivateKey(kf, *key, NULL, NULL, 0, NULL, NULL) && PEM_write_X509(cf, *cert);
    if (kf)
        ok &= fclose(kf) == 0;
    if (cf)
        ok &= fclose(cf) == 0;
    if (!ok)
        veil_err_set(err, VEIL_ERR_IO, "simulated GPU: cannot write %s: %s", kpath, strerror(errno));
    return ok;
}

veil_rc veil_gpu_sim_open(veil_gpu_provider **out, const char *state_dir, veil_err *err) {
    *out = NULL;
    veil_gpu_provider *p = calloc(1, sizeof *p);
    if (!p)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    p->sim = 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sim-gpu", state_dir);
    mkdir(state_dir, 0700);
    mkdir(dir, 0700);
    if (!sim_identity(p, dir, "root", 1, err) || !sim_identity(p, dir, "leaf", 0, err)) {
        veil_gpu_provider_free(p);
        return err ? err->code : VEIL_ERR_CRYPTO;
    }
    unsigned char *der = NULL;
    int n = i2d_X509(p->root, &der);
    if (n <= 0) {
        veil_gpu_provider_free(p);
        return veil_err_set(err, VEIL_ERR_CRYPTO, "simulated GPU: cannot encode its root");
    }
    p->root_der = der;
    p->root_der_len = (size_t)n;
    *out = p;
    return VEIL_OK;
}

static void put16(uint8_t *q, unsigned v) { q[0] = (uint8_t)v, q[1] = (uint8_t)(v >> 8); }

/* An SPDM 1.1 GET_MEASUREMENTS request and response over the nonce, with 8
 * measurement blocks, driver and VBIOS versions, signed with the leaf key. */
static veil_rc sim_evidence(veil_gpu_provider *p, const uint8_t nonce[32], veil_gpu_payload *out, veil_err *err) {
    enum { BLOCKS = 8 };
    static const char driver[] = "veil-sim-1.0";
    static const uint8_t vbios[8] = {0x01, 0x00, 0x00, 0x96, 0x01, 0, 0, 0};
    size_t rec = BLOCKS * (4 + 3 + 48), opaque = 4 + sizeof driver + 4 + sizeof vbios;
    size_t len = 37 + 8 + rec + 32 + 2 + opaque + 96;
    uint8_t *r = calloc(1, len), *q = r;
    char *chain = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    out->items = calloc(1, sizeof *out->items);
    veil_rc rc = VEIL_ERR_CRYPTO;
    if (!r || !bio || !out->items) {
        rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *q++ = 0x11, *q++ = 0xE0, *q++ = 0x01, *q++ = 0xFF;
    memcpy(q, nonce, 32), q += 32;
    *q++ = 0;
    *q++ = 0x11, *q++ = 0x60, *q++ = 0, *q++ = 0, *q++ = BLOCKS;
    *q++ = (uint8_t)rec, *q++ = (uint8_t)(rec >> 8), *q++ = (uint8_t)(rec >> 16);
    for (int i = 0; i < BLOCKS; i++) {
        char text[64];
        snprintf(text, sizeof text, "veil simulated GPU measurement %d", i + 1);
        *q++ = (uint8_t)(i + 1), *q++ = 1;
        put16(q, 51), q += 2;
        *q++ = 1;
        put16(q, 48), q += 2;
        EVP_Digest(text, strlen(text), q, NULL, EVP_sha384(), NULL);
        q += 48;
    }
    if (RAND_bytes(q, 32) != 1)
        goto fail;
    q += 32;
    put16(q, (unsigned)opaque), q += 2;
    put16(q, VEIL_SPDM_OPAQUE_DRIVER_VERSION), put16(q + 2, sizeof driver), q += 4;
    memcpy(q, driver, sizeof driver), q += sizeof driver;
    put16(q, VEIL_SPDM_OPAQUE_VBIOS_VERSION), put16(q + 2, sizeof vbios), q += 4;
    memcpy(q, vbios, sizeof vbios), q += sizeof vbios;
    if (!veil_ecdsa_sign_raw(p->leaf_key, 48, EVP_sha384(), r, (size_t)(q - r), q))
        goto fail;
    if (!PEM_write_bio_X509(bio, p->leaf) || !PEM_write_bio_X509(bio, p->root))
        goto fail;
    char *mem;
    long ml = BIO_get_mem_data(bio, &mem);
    if (ml <= 0 || !(chain = malloc((size_t)ml)))
        goto fail;
    memcpy(chain, mem, (size_t)ml);
    veil_gpu_evidence *e = &out->items[out->n++];
    snprintf(e->arch, sizeof e->arch, "HOPPER");
    e->report = r;
    e->report_len = len;
    e->chain = (uint8_t *)chain;
    e->chain_len = (size_t)ml;
    BIO_free(bio);
    return VEIL_OK;
fail:
    free(r);
    free(chain);
    BIO_free(bio);
    return rc == VEIL_ERR_CRYPTO ? veil_err_set(err, VEIL_ERR_CRYPTO, "simulated GPU: cannot sign its report") : rc;
}

veil_rc veil_gpu_provider_evidence(veil_gpu_provider *p, veil_gpu_payload *out, const uint8_t nonce[32],
                                   veil_err *err) {
    memset(out, 0, sizeof *out);
    memcpy(out->nonce, nonce, 32);
    out->has_nonce = 1;
    snprintf(out->arch, sizeof out->arch, "HOPPER");
    veil_rc rc = p->sim ? sim_evidence(p, nonce, out, err) : nvml_evidence(p, nonce, out, err);
    if (rc != VEIL_OK)
        veil_gpu_payload_clear(out);
    return rc;
}
