/* The simulated TDX platform: a CA hierarchy persisted in a state directory,
 * quotes laid out exactly as real v4 quotes (docs/protocol.md §5), and collateral
 * in the verifier's format, all signed with its own keys. Nothing here is
 * Intel's: the root is named "veil simulated SGX Root CA", and verifiers
 * pinned to Intel's root refuse every simulated quote. */
#include "veil/sim.h"
#include "x509.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/conf.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "veil/eventlog.h"
#include "veil/hex.h"
#include "veil/quote.h"

/* What the simulated platform reports of itself. */
static const uint8_t sim_fmspc[6] = {'V', 'E', 'I', 'L', 0, 0};
static const uint8_t sim_comp_svn[16] = {3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint16_t sim_pcesvn = 13;
static const uint8_t sim_tee_tcb_svn[16] = {3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t sim_xfam[8] = {0xe7, 0x02, 0x06, 0, 0, 0, 0, 0};
static const uint8_t intel_qe_vendor_id[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
static const uint16_t sim_qe_isvsvn = 8, sim_qe_prodid = 2;

enum { CA_ROOT, CA_PCK, PCK_LEAF, TCB_SIGNER, N_IDENTITIES };
static const struct {
    const char *file;
    const char *cn;
    int issuer;
    int years;
} identities[N_IDENTITIES] = {
    [CA_ROOT] = {"root", "veil simulated SGX Root CA", CA_ROOT, 25},
    [CA_PCK] = {"pck-ca", "veil simulated SGX PCK Platform CA", CA_ROOT, 20},
    [PCK_LEAF] = {"pck", "veil simulated SGX PCK Certificate", CA_PCK, 7},
    [TCB_SIGNER] = {"tcb", "veil simulated SGX TCB Signing", CA_ROOT, 7},
};

struct veil_sim {
    EVP_PKEY *key[N_IDENTITIES];
    X509 *cert[N_IDENTITIES];
    EVP_PKEY *attest_key; /* per process */
    uint8_t attest_pub[64];
    uint8_t mrtd[48];
    int debug;
};

static veil_rc ssl_fail(veil_err *err, const char *what) {
    return veil_err_set(err, VEIL_ERR_CRYPTO, "simulated TDX: %s failed in OpenSSL", what);
}

static void sha(const EVP_MD *md, const char *text, uint8_t *out) {
    EVP_Digest(text, strlen(text), out, NULL, md, NULL);
}

/* The extension the PCK certificate carries, in OpenSSL's ASN.1 generator language. */
static X509_EXTENSION *sgx_extension(X509V3_CTX *ctx, const uint8_t ppid[16]) {
    char conf[4096], hex[64];
    size_t n = 0;
    veil_hex_encode(hex, ppid, 16);
    n += (size_t)snprintf(conf + n, sizeof conf - n,
                          "[sgx]\nppid=SEQUENCE:ppid\ntcb=SEQUENCE:tcb\npceid=SEQUENCE:pceid\nfmspc=SEQUENCE:fmspc\n"
                          "sgxtype=SEQUENCE:sgxtype\n"
                          "[ppid]\noid=OID:1.2.840.113741.1.13.1.1\nval=FORMAT:HEX,OCTETSTRING:%s\n"
                          "[tcb]\noid=OID:1.2.840.113741.1.13.1.2\nval=SEQUENCE:comps\n[comps]\n",
                          hex);
    for (int i = 1; i <= 18; i++)
        n += (size_t)snprintf(conf + n, sizeof conf - n, "c%02d=SEQUENCE:c%02d\n", i, i);
    for (int i = 1; i <= 16; i++)
        n +=
            (size_t)snprintf(conf + n, sizeof conf - n, "[c%02d]\noid=OID:1.2.840.113741.1.13.1.2.%d\nval=INTEGER:%d\n",
                             i, i, sim_comp_svn[i - 1]);
    veil_hex_encode(hex, sim_comp_svn, 16);
    n += (size_t)snprintf(conf + n, sizeof conf - n,
                          "[c17]\noid=OID:1.2.840.113741.1.13.1.2.17\nval=INTEGER:%d\n"
                          "[c18]\noid=OID:1.2.840.113741.1.13.1.2.18\nval=FORMAT:HEX,OCTETSTRING:%s\n",
                          sim_pcesvn, hex);
    veil_hex_encode(hex, sim_fmspc, 6);
    n += (size_t)snprintf(conf + n, sizeof conf - n,
                          "[pceid]\noid=OID:1.2.840.113741.1.13.1.3\nval=FORMAT:HEX,OCTETSTRING:0000\n"
                          "[fmspc]\noid=OID:1.2.840.113741.1.13.1.4\nval=FORMAT:HEX,OCTETSTRING:%s\n"
                          "[sgxtype]\noid=OID:1.2.840.113741.1.13.1.5\nval=ENUMERATED:0\n",
                          hex);
    CONF *cnf = NCONF_new(NULL);
    BIO *bio = BIO_new_mem_buf(conf, (int)n);
    long line;
    X509_EXTENSION *ext = NULL;
    if (cnf && bio && NCONF_load_bio(cnf, bio, &line) > 0) {
        X509V3_set_nconf(ctx, cnf);
        ext = X509V3_EXT_nconf(cnf, ctx, "1.2.840.113741.1.13.1", "ASN1:SEQUENCE:sgx");
    }
    BIO_free(bio);
    NCONF_free(cnf);
    return ext;
}

static X509 *make_cert(veil_sim *s, int id, veil_err *err) {
    X509 *x = X509_new();
    int issuer = identities[id].issuer;
    X509_NAME *name = X509_NAME_new();
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    int ok = x && name && RAND_bytes(serial, sizeof serial) == 1;
    serial[0] &= 0x7f;
    if (ok) {
        bn = BN_bin2bn(serial, sizeof serial, NULL);
        ok =
            bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_set_version(x, 2) &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)identities[id].cn, -1, -1, 0) &&
            X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"veil simulation", -1, -1, 0) &&
            X509_set_subject_name(x, name) &&
            X509_set_issuer_name(x, id == CA_ROOT ? name : X509_get_subject_name(s->cert[issuer])) &&
            X509_gmtime_adj(X509_getm_notBefore(x), -86400) &&
            X509_gmtime_adj(X509_getm_notAfter(x), (long)identities[id].years * 365 * 86400) &&
            X509_set_pubkey(x, s->key[id]);
    }
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, id == CA_ROOT ? x : s->cert[issuer], x, NULL, NULL, 0);
    int ca = id == CA_ROOT || id == CA_PCK;
    const char *exts[][2] = {
        {"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
        {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,nonRepudiation"},
        {"subjectKeyIdentifier", "hash"},
        {"authorityKeyIdentifier", "keyid:always"},
    };
    for (size_t i = 0; ok && i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        ok = e && X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (ok && id == PCK_LEAF) {
        uint8_t ppid[16];
        X509_EXTENSION *e = RAND_bytes(ppid, 16) == 1 ? sgx_extension(&ctx, ppid) : NULL;
        ok = e && X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    ok = ok && X509_sign(x, s->key[issuer], EVP_sha256()) > 0;
    BN_free(bn);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        ssl_fail(err, "certificate creation");
        return NULL;
    }
    return x;
}

/* Loads identity `id` from dir, or makes and stores it. */
static veil_rc load_or_make(veil_sim *s, const char dir[3800], int id, veil_err *err) {
    char kpath[4096], cpath[4096];
    snprintf(kpath, sizeof kpath, "%s/%s.key", dir, identities[id].file);
    snprintf(cpath, sizeof cpath, "%s/%s.crt", dir, identities[id].file);
    FILE *kf = fopen(kpath, "r"), *cf = fopen(cpath, "r");
    int existed = kf || cf;
    if (kf && cf) {
        s->key[id] = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
        s->cert[id] = PEM_read_X509(cf, NULL, NULL, NULL);
    }
    if (kf)
        fclose(kf);
    if (cf)
        fclose(cf);
    if (s->key[id] && s->cert[id])
        return VEIL_OK;
    if (existed)
        return veil_err_set(err, VEIL_ERR_IO, "simulated TDX: %s or %s is unreadable; remove both to make new ones",
                            kpath, cpath);
    s->key[id] = EVP_EC_gen("P-256");
    if (!s->key[id])
        return ssl_fail(err, "key generation");
    s->cert[id] = make_cert(s, id, err);
    if (!s->cert[id])
        return VEIL_ERR_CRYPTO;
    mode_t old = umask(077);
    kf = fopen(kpath, "w");
    cf = fopen(cpath, "w");
    umask(old);
    int ok =
        kf && cf && PEM_write_PrivateKey(kf, s->key[id], NULL, NULL, 0, NULL, NULL) && PEM_write_X509(cf, s->cert[id]);
    if (kf)
        ok &= fclose(kf) == 0;
    if (cf)
        ok &= fclose(cf) == 0;
    if (!ok)
        return veil_err_set(err, VEIL_ERR_IO, "simulated TDX: cannot write %s: %s", kpath, strerror(errno));
    return VEIL_OK;
}

int veil_binary_sha384(uint8_t out[48]) {
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f)
        return 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha384(), NULL) == 1;
    unsigned char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(md, buf, n) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, out, NULL) == 1;
    EVP_MD_CTX_free(md);
    fclose(f);
    return ok;
}

veil_rc veil_sim_open(veil_sim **out, const char *state_dir, const veil_sim_options *opts, veil_err *err) {
    *out = NULL;
    char dir[3800];
    if (strlen(state_dir) > sizeof dir - 16)
        return veil_err_set(err, VEIL_ERR_IO, "simulated TDX: state directory path is too long");
    snprintf(dir, sizeof dir, "%s/sim-tdx", state_dir);
    if ((mkdir(state_dir, 0700) != 0 && errno != EEXIST) || (mkdir(dir, 0700) != 0 && errno != EEXIST))
        return veil_err_set(err, VEIL_ERR_IO, "simulated TDX: cannot create %s: %s", dir, strerror(errno));
    veil_sim *s = calloc(1, sizeof *s);
    if (!s)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    veil_rc rc = VEIL_OK;
    for (int id = 0; id < N_IDENTITIES && rc == VEIL_OK; id++)
        rc = load_or_make(s, dir, id, err);
    if (rc == VEIL_OK) {
        s->attest_key = EVP_EC_gen("P-256");
        uint8_t point[65];
        size_t n = 0;
        if (!s->attest_key ||
            EVP_PKEY_get_octet_string_param(s->attest_key, "encoded-pub-key", point, sizeof point, &n) != 1 || n != 65)
            rc = ssl_fail(err, "attestation key generation");
        else
            memcpy(s->attest_pub, point + 1, 64);
    }
    if (rc == VEIL_OK) {
        s->debug = opts && opts->debug;
        if (opts && opts->mrtd)
            memcpy(s->mrtd, opts->mrtd, 48);
        else if (!veil_binary_sha384(s->mrtd))
            rc = veil_err_set(err, VEIL_ERR_IO, "simulated TDX: cannot hash the running executable for MRTD");
    }
    if (rc != VEIL_OK) {
        veil_sim_free(s);
        return rc;
    }
    *out = s;
    return VEIL_OK;
}

void veil_sim_free(veil_sim *s) {
    if (!s)
        return;
    for (int i = 0; i < N_IDENTITIES; i++) {
        EVP_PKEY_free(s->key[i]);
        X509_free(s->cert[i]);
    }
    EVP_PKEY_free(s->attest_key);
    free(s);
}

static char *pem_of(X509 *const *certs, int n) {
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = PEM_write_bio_X509(bio, certs[i]);
    char *data, *out = NULL;
    long len = ok ? BIO_get_mem_data(bio, &data) : -1;
    if (len >= 0 && (out = malloc((size_t)len + 1))) {
        memcpy(out, data, (size_t)len);
        out[len] = '\0';
    }
    BIO_free(bio);
    return out;
}

veil_rc veil_sim_root_pem(const veil_sim *s, char **pem, veil_err *err) {
    *pem = pem_of(&s->cert[CA_ROOT], 1);
    return *pem ? VEIL_OK : veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
}

veil_rc veil_sim_root_der(const veil_sim *s, uint8_t **der, size_t *len, veil_err *err) {
    unsigned char *p = NULL;
    int n = i2d_X509(s->cert[CA_ROOT], &p);
    if (n <= 0)
        return ssl_fail(err, "certificate encoding");
    *der = malloc((size_t)n);
    if (!*der) {
        OPENSSL_free(p);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    memcpy(*der, p, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(p);
    return VEIL_OK;
}

/* ECDSA P-256/SHA-256 over data, as raw r || s. */
static int sign_raw(EVP_PKEY *key, const uint8_t *data, size_t n, uint8_t out[64]) {
    return veil_ecdsa_sign_raw(key, 32, EVP_sha256(), data, n, out);
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The 384-byte QE report (SGX report body layout). */
static void qe_report(uint8_t r[384], const uint8_t report_data[64]) {
    memset(r, 0, 384);
    memcpy(r, sim_comp_svn, 16);                                 /* CPUSVN */
    r[48] = 0x11;                                                /* ATTRIBUTES: INIT | MODE64BIT, not DEBUG */
    sha(EVP_sha256(), "veil simulated quoting enclave", r + 64); /* MRENCLAVE */
    sha(EVP_sha256(), "veil simulated QE signer", r + 128);      /* MRSIGNER */
    put16(r + 256, sim_qe_prodid);
    put16(r + 258, sim_qe_isvsvn);
    memcpy(r + 320, report_data, 64);
}

veil_rc veil_sim_quote(veil_sim *s, uint8_t **quote, size_t *quote_len, const uint8_t report_data[64],
                       const veil_event_log *runtime, veil_err *err) {
    *quote = NULL;
    char *chain = pem_of((X509 *[]){s->cert[PCK_LEAF], s->cert[CA_PCK], s->cert[CA_ROOT]}, 3);
    if (!chain)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    size_t chain_len = strlen(chain) + 1; /* real chains end with a NUL */
    uint8_t auth[32];
    sha(EVP_sha256(), "veil simulated QE auth data", auth);
    size_t inner = 384 + 64 + 2 + sizeof auth + 2 + 4 + chain_len;
    size_t sig_data = 64 + 64 + 2 + 4 + inner;
    size_t len = 632 + 4 + sig_data;
    uint8_t *q = calloc(1, len);
    if (!q) {
        free(chain);
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    /* header */
    put16(q, 4);
    put16(q + 2, 2);
    put32(q + 4, VEIL_TEE_TYPE_TDX);
    memcpy(q + 12, intel_qe_vendor_id, 16);
    memcpy(q + 28, "veil-simulated-tdx", 18);
    /* TD report body */
    uint8_t *b = q + 48;
    memcpy(b, sim_tee_tcb_svn, 16);
    sha(EVP_sha384(), "veil simulated TDX module", b + 16); /* MRSEAM; MRSIGNERSEAM, SEAMATTRIBUTES zero */
    b[120 + 3] = 0x10;                                      /* TDATTRIBUTES: SEPT_VE_DISABLE */
    if (s->debug)
        b[120] |= 0x01;
    memcpy(b + 128, sim_xfam, 8);
    memcpy(b + 136, s->mrtd, 48);
    sha(EVP_sha384(), "veil simulated firmware", b + 328); /* RTMR0..2: fixed simulated boot */
    sha(EVP_sha384(), "veil simulated kernel", b + 376);
    sha(EVP_sha384(), "veil simulated kernel command line", b + 424);
    uint8_t rtmr[4][48];
    veil_event_log_replay(runtime, rtmr, NULL);
    memcpy(b + 472, rtmr[3], 48);
    memcpy(b + 520, report_data, 64);
    /* signature data */
    put32(q + 632, (uint32_t)sig_data);
    uint8_t *sd = q + 636;
    memcpy(sd + 64, s->attest_pub, 64);
    put16(sd + 128, 6);
    put32(sd + 130, (uint32_t)inner);
    uint8_t *c = sd + 134, rd[64] = {0};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, s->attest_pub, 64) == 1 &&
             EVP_DigestUpdate(md, auth, sizeof auth) == 1 && EVP_DigestFinal_ex(md, rd, NULL) == 1;
    EVP_MD_CTX_free(md);
    qe_report(c, rd);
    ok = ok && sign_raw(s->key[PCK_LEAF], c, 384, c + 384);
    put16(c + 448, sizeof auth);
    memcpy(c + 450, auth, sizeof auth);
    put16(c + 450 + sizeof auth, 5);
    put32(c + 452 + sizeof auth, (uint32_t)chain_len);
    memcpy(c + 456 + sizeof auth, chain, chain_len);
    ok = ok && sign_raw(s->attest_key, q, 632, sd);
    free(chain);
    if (!ok) {
        free(q);
        return ssl_fail(err, "quote signing");
    }
    *quote = q;
    *quote_len = len;
    return VEIL_OK;
}

static void iso(char out[32], int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *components(const uint8_t svn[16]) {
    json_t *a = json_array();
    for (int i = 0; i < 16; i++)
        json_array_append_new(a, json_pack("{s:i}", "svn", svn[i]));
    return a;
}

/* Dumps `doc` compactly, signs the text, and stores both under key / key_signature. */
static int put_signed(json_t *out, const char *key, json_t *doc, EVP_PKEY *signer) {
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    uint8_t sig[64];
    int ok = text && sign_raw(signer, (const uint8_t *)text, strlen(text), sig);
    if (ok) {
        char hex[129], name[64];
        veil_hex_encode(hex, sig, 64);
        snprintf(name, sizeof name, "%s_signature", key);
        json_object_set_new(out, key, json_string(text));
        json_object_set_new(out, name, json_string(hex));
    }
    free(text);
    json_decref(doc);
    return ok;
}

static char *crl_hex(X509 *issuer, EVP_PKEY *key, int64_t now, X509 *revoke) {
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_set(NULL, (time_t)(now - 3600)),
              *next = ASN1_TIME_set(NULL, (time_t)(now + 30 * 86400));
    int ok = crl && last && next && X509_CRL_set_version(crl, 1) &&
             X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) && X509_CRL_set1_lastUpdate(crl, last) &&
             X509_CRL_set1_nextUpdate(crl, next);
    if (ok && revoke) {
        X509_REVOKED *r = X509_REVOKED_new();
        ok = r && X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoke)) &&
             X509_REVOKED_set_revocationDate(r, last) && X509_CRL_add0_revoked(crl, r);
        if (!ok)
            X509_REVOKED_free(r);
    }
    ok = ok && X509_CRL_sort(crl) && X509_CRL_sign(crl, key, EVP_sha256()) > 0;
    unsigned char *der = NULL;
    int n = ok ? i2d_X509_CRL(crl, &der) : -1;
    char *hex = n > 0 ? veil_hex_encode_alloc(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    return hex;
}

veil_rc veil_sim_collateral(const veil_sim *s, char **json, int64_t now, int revoke_pck, veil_err *err) {
    *json = NULL;
    char issued[32], next[32], tcb_date[32], fmspc[13], mrsigner[65], seam_signer[97];
    iso(issued, now - 60);
    iso(next, now + 30 * 86400);
    iso(tcb_date, now - 30 * 86400);
    veil_hex_encode(fmspc, sim_fmspc, 6);
    uint8_t qe_signer[32];
    sha(EVP_sha256(), "veil simulated QE signer", qe_signer);
    veil_hex_encode(mrsigner, qe_signer, 32);
    memset(seam_signer, '0', 96);
    seam_signer[96] = '\0';
    json_t *tcb_info = json_pack(
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:i, s:i, s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:s, s:s, s:[{s:{s:i}, s:s, s:s}]}],"
        " s:[{s:{s:o, s:i, s:o}, s:s, s:s}]}",
        "id", "TDX", "version", 3, "issueDate", issued, "nextUpdate", next, "fmspc", fmspc, "pceId", "0000", "tcbType",
        0, "tcbEvaluationDataNumber", 1, "tdxModule", "mrsigner", seam_signer, "attributes", "0000000000000000",
        "attributesMask", "FFFFFFFFFFFFFFFF", "tdxModuleIdentities", "id", "TDX_01", "mrsigner", seam_signer,
        "attributes", "0000000000000000", "attributesMask", "FFFFFFFFFFFFFFFF", "tcbLevels", "tcb", "isvsvn",
        sim_tee_tcb_svn[0], "tcbDate", tcb_date, "tcbStatus", "UpToDate", "tcbLevels", "tcb", "sgxtcbcomponents",
        components(sim_comp_svn), "pcesvn", sim_pcesvn, "tdxtcbcomponents", components(sim_tee_tcb_svn), "tcbDate",
        tcb_date, "tcbStatus", "UpToDate");
    json_t *qe_identity = json_pack(
        "{s:s, s:i, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:[{s:{s:i}, s:s, s:s}]}", "id", "TD_QE", "version", 2,
        "issueDate", issued, "nextUpdate", next, "tcbEvaluationDataNumber", 1, "miscselect", "00000000",
        "miscselectMask", "FFFFFFFF", "attributes", "11000000000000000000000000000000", "attributesMask",
        "FBFFFFFFFFFFFFFF0000000000000000", "mrsigner", mrsigner, "isvprodid", sim_qe_prodid, "tcbLevels", "tcb",
        "isvsvn", sim_qe_isvsvn, "tcbDate", tcb_date, "tcbStatus", "UpToDate");
    json_t *out = json_object();
    char *tcb_chain = pem_of((X509 *[]){s->cert[TCB_SIGNER], s->cert[CA_ROOT]}, 2);
    char *pck_chain = pem_of((X509 *[]){s->cert[CA_PCK], s->cert[CA_ROOT]}, 2);
    char *root_crl = crl_hex(s->cert[CA_ROOT], s->key[CA_ROOT], now, NULL);
    char *pck_crl = crl_hex(s->cert[CA_PCK], s->key[CA_PCK], now, revoke_pck ? s->cert[PCK_LEAF] : NULL);
    int ok = tcb_info && qe_identity && out && tcb_chain && pck_chain && root_crl && pck_crl;
    if (ok) {
        ok = put_signed(out, "tcb_info", tcb_info, s->key[TCB_SIGNER]) &&
             put_signed(out, "qe_identity", qe_identity, s->key[TCB_SIGNER]);
        tcb_info = qe_identity = NULL;
    }
    if (ok) {
        json_object_set_new(out, "tcb_info_issuer_chain", json_string(tcb_chain));
        json_object_set_new(out, "qe_identity_issuer_chain", json_string(tcb_chain));
        json_object_set_new(out, "pck_crl_issuer_chain", json_string(pck_chain));
        json_object_set_new(out, "root_ca_crl", json_string(root_crl));
        json_object_set_new(out, "pck_crl", json_string(pck_crl));
        *json = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        ok = *json != NULL;
    }
    json_decref(tcb_info);
    json_decref(qe_identity);
    json_decref(out);
    free(tcb_chain);
    free(pck_chain);
    free(root_crl);
    free(pck_crl);
    return ok ? VEIL_OK : ssl_fail(err, "collateral creation");
}
