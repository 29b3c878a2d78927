/* bench/attest: TDX quote verification time without and with collateral,
 * against a baseline measured in the same run: one ECDSA P-256 signature
 * verification through OpenSSL (a collateral-free verification performs five:
 * quote, QE report, and three certificates; with collateral about five more).
 * Uses the real dcap-qvl sample from the shared vectors.
 * Usage: build/bench/attest [--vectors DIR] [--rounds N] [--seconds S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "veil/collateral.h"
#include "veil/quote.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t *slurp(const char *dir, const char *rel, size_t *len) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench/attest: cannot open %s (pass --vectors DIR)\n", path);
        exit(2);
    }
    uint8_t *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

typedef struct ctx {
    veil_quote q;
    const uint8_t *raw;
    size_t raw_len;
    const char *col_text;
    size_t col_len;
    veil_collateral *col;
    EVP_PKEY *key;
    unsigned char sig[80];
    size_t sig_len;
} ctx;

static void op_baseline(ctx *c) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, c->key) != 1 ||
        EVP_DigestVerify(md, c->sig, c->sig_len, c->raw, 632) != 1)
        exit(3);
    EVP_MD_CTX_free(md);
}

static void op_parse(ctx *c) {
    veil_quote q;
    if (veil_quote_parse(&q, c->raw, c->raw_len, NULL, NULL) != VEIL_OK)
        exit(3);
}

static void verify_with(ctx *c, const veil_collateral *col) {
    veil_quote_options o;
    veil_quote_options_init(&o);
    o.at = 1752919234;
    o.collateral = col;
    veil_quote_verdict v;
    if (veil_quote_verify(&v, &c->q, &o, NULL) != VEIL_OK || v.code != VEIL_QUOTE_OK)
        exit(3);
}

static void op_verify(ctx *c) { verify_with(c, NULL); }
static void op_verify_collateral(ctx *c) { verify_with(c, c->col); }
static void op_parse_collateral(ctx *c) {
    veil_collateral *col;
    if (veil_collateral_parse(&col, c->col_text, c->col_len, NULL) != VEIL_OK)
        exit(3);
    veil_collateral_free(col);
}

static double measure(void (*op)(ctx *), ctx *c, double seconds) {
    long n = 0;
    double t0 = now(), t;
    do {
        op(c);
        n++;
        t = now();
    } while (t - t0 < seconds);
    return (t - t0) / (double)n * 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *dir = getenv("VEIL_VECTORS") ? getenv("VEIL_VECTORS") : "../shared/vectors";
    int rounds = 5;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vectors") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--vectors DIR] [--rounds N] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 99 || seconds <= 0)
        return 2;
    ctx c;
    memset(&c, 0, sizeof c);
    size_t n;
    uint8_t *raw = slurp(dir, "tdx/dcap-qvl/sample_tdx_quote", &n);
    c.raw = raw;
    c.raw_len = n;
    uint8_t *col = slurp(dir, "tdx/dcap-qvl/sample_tdx_quote_collateral.json", &n);
    c.col_text = (const char *)col;
    c.col_len = n;
    if (veil_quote_parse(&c.q, c.raw, c.raw_len, NULL, NULL) != VEIL_OK ||
        veil_collateral_parse(&c.col, c.col_text, c.col_len, NULL) != VEIL_OK)
        return 3;
    /* baseline: sign the quote's header and body with a fresh P-256 key and verify that */
    c.key = EVP_EC_gen("P-256");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    c.sig_len = sizeof c.sig;
    if (!c.key || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c.key) != 1 ||
        EVP_DigestSign(md, c.sig, &c.sig_len, c.raw, 632) != 1)
        return 3;
    EVP_MD_CTX_free(md);

    struct {
        const char *name;
        void (*op)(ctx *);
        double runs[99];
    } ops[] = {
        {"baseline: 1 ECDSA P-256 verify", op_baseline, {0}},
        {"parse quote", op_parse, {0}},
        {"verify, no collateral", op_verify, {0}},
        {"parse collateral JSON", op_parse_collateral, {0}},
        {"verify with collateral", op_verify_collateral, {0}},
    };
    enum { N = sizeof ops / sizeof ops[0] };
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < N; k++)
            ops[k].runs[r] = measure(ops[k].op, &c, seconds);
    printf("TDX quote verification (dcap-qvl sample, v4), median of %d rounds of %.2fs\n", rounds, seconds);
    printf("%-34s %12s %16s\n", "operation", "us/op", "x baseline");
    double base = 0;
    for (int k = 0; k < N; k++) {
        qsort(ops[k].runs, (size_t)rounds, sizeof(double), cmp);
        double m = ops[k].runs[rounds / 2];
        if (k == 0)
            base = m;
        printf("%-34s %12.1f %16.2f\n", ops[k].name, m, m / base);
    }
    veil_collateral_free(c.col);
    EVP_PKEY_free(c.key);
    free(raw);
    free(col);
    return 0;
}
