/* bench/e2ee: throughput of the four E2EE envelope operations against the
 * floor measured in the same run (one libsecp256k1 key generation plus one
 * ECDH), which no envelope operation can beat. Target: response chunk
 * encrypt costs at most 1.15 x the floor.
 * Usage: build/bench/e2ee [--seconds S] [--rounds N] */
#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil/ecies.h"
#include "veil/keys.h"
#include "veil/secure.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "bench/e2ee: %s failed\n", what);
    exit(1);
}

typedef struct state {
    veil_seckey model_sec, client_sec;
    veil_pubkey model_pub, client_pub;
    char *request_hex, *chunk_hex;
    secp256k1_context *ctx;
    unsigned char scalar[32];
    secp256k1_pubkey peer;
} state;

/* A user message of typical size, and a streamed chunk of one or two tokens. */
static const char request_text[] =
    "Summarize the following meeting notes in three bullet points, keeping every date and "
    "name exact: the quarterly review moved to Thursday; Ana owns the migration plan; the "
    "vendor contract renews on the first of next month unless cancelled in writing.";
static const char chunk_text[] = " the quarterly";

static int copy_x(unsigned char *out, const unsigned char *x, const unsigned char *y, void *d) {
    (void)y;
    (void)d;
    memcpy(out, x, 32);
    return 1;
}

static void op_floor(state *s) {
    secp256k1_pubkey pk;
    unsigned char shared[32];
    /* Key generation is a scalar from the CSPRNG and its public point. */
    if (veil_random_bytes(s->scalar, 32, NULL) != VEIL_OK)
        die("random");
    s->scalar[0] &= 0x7f; /* below the group order, so every draw is a valid key */
    if (!secp256k1_ec_pubkey_create(s->ctx, &pk, s->scalar) ||
        !secp256k1_ecdh(s->ctx, shared, &s->peer, s->scalar, copy_x, NULL))
        die("floor");
}

static void op_request_encrypt(state *s) {
    char *hex;
    if (veil_ecies_seal_hex(&hex, &s->model_pub, (const uint8_t *)request_text, sizeof request_text - 1,
                            NULL) != VEIL_OK)
        die("request encrypt");
    free(hex);
}

static void op_server_decrypt(state *s) {
    uint8_t *pt;
    size_t n;
    if (veil_ecies_open_hex(&pt, &n, &s->model_sec, s->request_hex, strlen(s->request_hex), NULL) != VEIL_OK)
        die("server decrypt");
    veil_free_secret(pt, n + 1);
}

static void op_chunk_encrypt(state *s) {
    char *hex;
    if (veil_ecies_seal_hex(&hex, &s->client_pub, (const uint8_t *)chunk_text, sizeof chunk_text - 1,
                            NULL) != VEIL_OK)
        die("chunk encrypt");
    free(hex);
}

static void op_chunk_decrypt(state *s) {
    uint8_t *pt;
    size_t n;
    if (veil_ecies_open_hex(&pt, &n, &s->client_sec, s->chunk_hex, strlen(s->chunk_hex), NULL) != VEIL_OK)
        die("chunk decrypt");
    veil_free_secret(pt, n + 1);
}

/* Runs `op` for about `seconds` and returns operations per second. */
static double measure(void (*op)(state *), state *s, double seconds) {
    long n = 0, batch = 64;
    double t0 = now(), t;
    do {
        for (long i = 0; i < batch; i++)
            op(s);
        n += batch;
        t = now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    double seconds = 0.5;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 99 || seconds <= 0) {
        fprintf(stderr, "bench/e2ee: rounds must be 1..99 and seconds positive\n");
        return 2;
    }

    state s;
    memset(&s, 0, sizeof s);
    if (veil_seckey_generate(&s.model_sec, NULL) || veil_pubkey_from_seckey(&s.model_pub, &s.model_sec, NULL) ||
        veil_seckey_generate(&s.client_sec, NULL) ||
        veil_pubkey_from_seckey(&s.client_pub, &s.client_sec, NULL))
        die("key setup");
    if (veil_ecies_seal_hex(&s.request_hex, &s.model_pub, (const uint8_t *)request_text,
                            sizeof request_text - 1, NULL) ||
        veil_ecies_seal_hex(&s.chunk_hex, &s.client_pub, (const uint8_t *)chunk_text,
                            sizeof chunk_text - 1, NULL))
        die("fixture");
    s.ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    unsigned char seed[32];
    if (!s.ctx || veil_random_bytes(seed, 32, NULL) || !secp256k1_context_randomize(s.ctx, seed) ||
        !secp256k1_ec_pubkey_parse(s.ctx, &s.peer, s.client_pub.bytes, VEIL_PUBKEY_LEN))
        die("secp256k1 setup");

    struct {
        const char *name;
        void (*op)(state *);
        double runs[99];
    } ops[] = {
        {"floor (keygen + ECDH)", op_floor, {0}},
        {"request field encrypt", op_request_encrypt, {0}},
        {"server field decrypt", op_server_decrypt, {0}},
        {"response chunk encrypt", op_chunk_encrypt, {0}},
        {"client chunk decrypt", op_chunk_decrypt, {0}},
    };
    enum { N_OPS = sizeof ops / sizeof ops[0] };
    /* Interleave the operations round by round so drift in the machine's
     * speed touches all of them alike; report medians. */
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < N_OPS; k++)
            ops[k].runs[r] = measure(ops[k].op, &s, seconds);
    double median[N_OPS];
    for (int k = 0; k < N_OPS; k++) {
        qsort(ops[k].runs, (size_t)rounds, sizeof(double), cmp_double);
        median[k] = ops[k].runs[rounds / 2];
    }
    printf("e2ee envelope, single thread, median of %d rounds of %.2fs (request %zu bytes, chunk %zu bytes)\n",
           rounds, seconds, sizeof request_text - 1, sizeof chunk_text - 1);
    printf("%-24s %12s %14s\n", "operation", "ops/s", "cost / floor");
    for (int k = 0; k < N_OPS; k++)
        printf("%-24s %12.0f %14.3f\n", ops[k].name, median[k], median[0] / median[k]);
    double ratio = median[0] / median[3];
    printf("chunk encrypt / floor = %.3f (target <= 1.15): %s\n", ratio, ratio <= 1.15 ? "met" : "NOT met");

    free(s.request_hex);
    free(s.chunk_hex);
    secp256k1_context_destroy(s.ctx);
    veil_seckey_wipe(&s.model_sec);
    veil_seckey_wipe(&s.client_sec);
    return 0;
}
