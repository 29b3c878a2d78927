/* Unit tests for the quote providers against fakes written for the tests: a
 * fake configfs-tsm report directory whose outblob is a FIFO served by a
 * thread playing the kernel, and a fake dstack guest agent speaking HTTP on
 * a unix socket. Quotes come from the simulator, so they parse and verify. */
#include "testutil.h"

#include "attest/dstack.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "veil/provider.h"
#include "veil/quote.h"
#include "veil/sim.h"

static char dir[64];
static veil_sim *sim;

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/veil-test-provider-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return veil_sim_open(&sim, dir, NULL, NULL) == VEIL_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    veil_sim_free(sim);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- fake configfs-tsm ---- */

typedef struct kernel {
    char entry[256];
    int requests;        /* how many outblob reads to serve */
    int bump_extra;      /* per request: extra generation increments (another writer) */
    int bump_extra_once; /* only the first request gets bump_extra */
    int wrong_data;      /* answer with a quote over other report data */
    int served;
} kernel;

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static unsigned long long read_gen(const char *entry) {
    char path[300];
    snprintf(path, sizeof path, "%s/generation", entry);
    FILE *f = fopen(path, "r");
    unsigned long long g = 0;
    if (f) {
        if (fscanf(f, "%llu", &g) != 1)
            g = 0;
        fclose(f);
    }
    return g;
}

/* Plays the kernel: when the provider opens outblob, read inblob, bump the
 * generation counter, and write a quote over the report data. */
static void *kernel_thread(void *arg) {
    kernel *k = arg;
    char out[300], in[300], gen[300];
    snprintf(out, sizeof out, "%s/outblob", k->entry);
    snprintf(in, sizeof in, "%s/inblob", k->entry);
    snprintf(gen, sizeof gen, "%s/generation", k->entry);
    for (int r = 0; r < k->requests; r++) {
        /* A new request starts with a new write to inblob, which the provider
         * makes only after it closed outblob: wait for it (this fake empties
         * inblob once it has read it), so that no answer goes into a pipe
         * still being read for the previous request. */
        struct stat st;
        for (int tries = 0; tries < 5000; tries++) {
            if (stat(in, &st) == 0 && st.st_size == 64)
                break;
            usleep(1000);
        }
        int fd = -1;
        for (int tries = 0; tries < 5000 && fd < 0; tries++) { /* up to 5 s for a reader */
            fd = open(out, O_WRONLY | O_NONBLOCK);
            if (fd < 0)
                usleep(1000);
        }
        if (fd < 0)
            return NULL;
        fcntl(fd, F_SETFL, 0);
        uint8_t rd[64] = {0};
        FILE *f = fopen(in, "rb");
        size_t got = f ? fread(rd, 1, 64, f) : 0;
        if (f)
            fclose(f);
        if (truncate(in, 0) != 0)
            return NULL;
        if (got != 64)
            memset(rd, 0, 64);
        if (k->wrong_data)
            rd[0] ^= 0xff;
        int extra = k->bump_extra && (!k->bump_extra_once || r == 0) ? k->bump_extra : 0;
        char num[32];
        snprintf(num, sizeof num, "%llu\n", read_gen(k->entry) + 1 + (unsigned long long)extra);
        write_text(gen, num);
        uint8_t *q;
        size_t len;
        if (veil_sim_quote(sim, &q, &len, rd, NULL, NULL) == VEIL_OK) {
            ssize_t w = write(fd, q, len);
            (void)w;
            free(q);
        }
        close(fd);
        k->served++;
    }
    return NULL;
}

static veil_quote_provider *fake_configfs(kernel *k, pthread_t *th) {
    char base[128];
    snprintf(base, sizeof base, "%s/tsm-report", dir);
    mkdir(base, 0700);
    snprintf(k->entry, sizeof k->entry, "%s/veil-%ld", base, (long)getpid());
    mkdir(k->entry, 0700);
    char path[300];
    snprintf(path, sizeof path, "%s/outblob", k->entry);
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(path, sizeof path, "%s/inblob", k->entry);
    write_text(path, "");
    snprintf(path, sizeof path, "%s/generation", k->entry);
    write_text(path, "7\n");
    veil_provider_config cfg = {base, NULL, NULL, NULL};
    veil_quote_provider *p;
    veil_err err;
    if (veil_provider_open(&p, VEIL_TEE_TDX, &cfg, &err) != VEIL_OK)
        fail_msg("%s", err.message);
    assert_string_equal(veil_provider_name(p), "intel-tdx");
    assert_false(veil_provider_is_simulated(p));
    assert_int_equal(pthread_create(th, NULL, kernel_thread, k), 0);
    return p;
}

static void report_data(uint8_t rd[64], int seed) {
    for (int i = 0; i < 64; i++)
        rd[i] = (uint8_t)(seed + i);
}

static void configfs_quote(void **state) {
    (void)state;
    kernel k = {.requests = 1};
    pthread_t th;
    veil_quote_provider *p = fake_configfs(&k, &th);
    uint8_t rd[64], *quote;
    size_t len;
    char *log;
    report_data(rd, 9);
    veil_err err;
    if (veil_provider_get_quote(p, &quote, &len, &log, rd, &err) != VEIL_OK)
        fail_msg("%s", err.message);
    pthread_join(th, NULL);
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, quote, len, NULL, NULL), VEIL_OK);
    assert_memory_equal(q.td.report_data, rd, 64);
    assert_null(log);
    assert_int_equal(k.served, 1);
    free(quote);
    veil_provider_free(p);
    /* veil did not create the entry, so it leaves it */
    struct stat st;
    assert_int_equal(stat(k.entry, &st), 0);
}

static void configfs_generation_changed_once(void **state) {
    (void)state;
    kernel k = {.requests = 2, .bump_extra = 1, .bump_extra_once = 1};
    pthread_t th;
    veil_quote_provider *p = fake_configfs(&k, &th);
    uint8_t rd[64], *quote;
    size_t len;
    char *log;
    report_data(rd, 20);
    veil_err err;
    if (veil_provider_get_quote(p, &quote, &len, &log, rd, &err) != VEIL_OK)
        fail_msg("%s", err.message);
    pthread_join(th, NULL);
    assert_int_equal(k.served, 2); /* the first answer was discarded and the request retried */
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, quote, len, NULL, NULL), VEIL_OK);
    assert_memory_equal(q.td.report_data, rd, 64);
    free(quote);
    veil_provider_free(p);
}

static void configfs_generation_keeps_changing(void **state) {
    (void)state;
    kernel k = {.requests = 3, .bump_extra = 2};
    pthread_t th;
    veil_quote_provider *p = fake_configfs(&k, &th);
    uint8_t rd[64], *quote = (uint8_t *)"sentinel";
    size_t len = 1;
    char *log;
    report_data(rd, 30);
    veil_err err;
    assert_int_equal(veil_provider_get_quote(p, &quote, &len, &log, rd, &err), VEIL_ERR_IO);
    pthread_join(th, NULL);
    assert_null(quote);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err.message, "generation"));
    veil_provider_free(p);
}

static void configfs_wrong_report_data(void **state) {
    (void)state;
    kernel k = {.requests = 1, .wrong_data = 1};
    pthread_t th;
    veil_quote_provider *p = fake_configfs(&k, &th);
    uint8_t rd[64], *quote;
    size_t len;
    char *log;
    report_data(rd, 40);
    veil_err err;
    assert_int_equal(veil_provider_get_quote(p, &quote, &len, &log, rd, &err), VEIL_ERR_MALFORMED);
    pthread_join(th, NULL);
    assert_null(quote);
    assert_non_null(strstr(err.message, "other report data"));
    veil_provider_free(p);
}

static void configfs_absent(void **state) {
    (void)state;
    veil_provider_config cfg = {"/nonexistent/tsm/report", "/nonexistent/dstack.sock", NULL, NULL};
    veil_quote_provider *p;
    veil_err err;
    assert_int_equal(veil_provider_open(&p, VEIL_TEE_TDX, &cfg, &err), VEIL_ERR_IO);
    assert_non_null(strstr(err.message, "configfs-tsm"));
    assert_int_equal(veil_provider_open(&p, VEIL_TEE_DSTACK, &cfg, &err), VEIL_ERR_IO);
    /* auto with neither falls back to the simulator, which needs a state directory */
    assert_int_equal(veil_provider_open(&p, VEIL_TEE_AUTO, &cfg, &err), VEIL_ERR_INVALID_ARG);
    cfg.state_dir = dir;
    assert_int_equal(veil_provider_open(&p, VEIL_TEE_AUTO, &cfg, &err), VEIL_OK);
    assert_string_equal(veil_provider_name(p), "veil-simulated");
    assert_true(veil_provider_is_simulated(p));
    veil_provider_free(p);
}

/* ---- fake dstack guest agent ---- */

typedef struct agent {
    char path[108];
    int listen_fd;
    int mode; /* 0: good answer, 1: HTTP 500, 2: not JSON, 3: `reply` */
    const char *reply;
    char request[4096];
} agent;

static void *agent_thread(void *arg) {
    agent *a = arg;
    int fd = accept(a->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    char *body = NULL;
    while (n < sizeof a->request - 1) {
        ssize_t r = read(fd, a->request + n, sizeof a->request - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        a->request[n] = 0;
        char *end = strstr(a->request, "\r\n\r\n");
        char *cl = strcasestr(a->request, "Content-Length:");
        if (end && cl && strlen(end + 4) >= (size_t)atoi(cl + 15)) {
            body = end + 4;
            break;
        }
    }
    uint8_t rd[64] = {0};
    const char *hex = body ? strstr(body, "\"report_data\":\"") : NULL;
    if (hex && veil_hex_decode(rd, 64, NULL, hex + 15, 128, NULL) != VEIL_OK)
        memset(rd, 0, 64);
    char *resp = NULL;
    uint8_t *q;
    size_t len;
    if (a->mode == 0 && veil_sim_quote(sim, &q, &len, rd, NULL, NULL) == VEIL_OK) {
        char *qhex = veil_hex_encode_alloc(q, len);
        const char *log = "[{\\\"imr\\\":3,\\\"event_type\\\":1,\\\"digest\\\":\\\"00\\\",\\\"event\\\":\\\"x\\\","
                          "\\\"event_payload\\\":\\\"\\\"}]";
        size_t blen = strlen(qhex) + strlen(log) + 64;
        char *json = malloc(blen);
        snprintf(json, blen, "{\"quote\":\"%s\",\"event_log\":\"%s\"}", qhex, log);
        resp = malloc(blen + 128);
        snprintf(
            resp, blen + 128,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
            strlen(json), json);
        free(json);
        free(qhex);
        free(q);
    } else if (a->mode == 3) {
        size_t blen = strlen(a->reply) + 160;
        resp = malloc(blen);
        snprintf(
            resp, blen,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
            strlen(a->reply), a->reply);
    } else if (a->mode == 1) {
        resp = strdup("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfail");
    } else {
        resp = strdup("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    }
    size_t off = 0, total = strlen(resp);
    while (off < total) {
        ssize_t w = write(fd, resp + off, total - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(resp);
    close(fd);
    return NULL;
}

static veil_quote_provider *fake_agent(agent *a, int mode, pthread_t *th) {
    memset(a, 0, sizeof *a);
    a->mode = mode;
    snprintf(a->path, sizeof a->path, "%s/dstack-%d.sock", dir, mode);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a->path);
    unlink(a->path); /* left by an earlier case of the same mode */
    assert_int_equal(bind(a->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(a->listen_fd, 1), 0);
    assert_int_equal(pthread_create(th, NULL, agent_thread, a), 0);
    veil_provider_config cfg = {"/nonexistent", a->path, NULL, NULL};
    veil_quote_provider *p;
    veil_err err;
    if (veil_provider_open(&p, VEIL_TEE_AUTO, &cfg, &err) != VEIL_OK) /* auto finds the socket */
        fail_msg("%s", err.message);
    assert_string_equal(veil_provider_name(p), "dstack");
    return p;
}

static void dstack_quote(void **state) {
    (void)state;
    agent a;
    pthread_t th;
    veil_quote_provider *p = fake_agent(&a, 0, &th);
    uint8_t rd[64], *quote;
    size_t len;
    char *log;
    report_data(rd, 50);
    veil_err err;
    if (veil_provider_get_quote(p, &quote, &len, &log, rd, &err) != VEIL_OK)
        fail_msg("%s", err.message);
    pthread_join(th, NULL);
    assert_non_null(strstr(a.request, "POST /GetQuote"));
    char hex[129];
    veil_hex_encode(hex, rd, 64);
    assert_non_null(strstr(a.request, hex));
    veil_quote q;
    assert_int_equal(veil_quote_parse(&q, quote, len, NULL, NULL), VEIL_OK);
    assert_memory_equal(q.td.report_data, rd, 64);
    assert_non_null(log);
    assert_int_equal(log[0], '[');
    free(quote);
    free(log);
    close(a.listen_fd);
    veil_provider_free(p);
}

static void dstack_failures(void **state) {
    (void)state;
    for (int mode = 1; mode <= 2; mode++) {
        agent a;
        pthread_t th;
        veil_quote_provider *p = fake_agent(&a, mode, &th);
        uint8_t rd[64], *quote;
        size_t len;
        char *log;
        report_data(rd, 60);
        veil_err err;
        assert_int_equal(veil_provider_get_quote(p, &quote, &len, &log, rd, &err), VEIL_ERR_IO);
        assert_null(quote);
        pthread_join(th, NULL);
        close(a.listen_fd);
        veil_provider_free(p);
    }
}

/* dstack's GetKey: the agent's key, and every malformed reply refused. */
static void dstack_key(void **state) {
    (void)state;
    static const struct {
        int mode;
        const char *reply;
        veil_rc want;
    } cases[] = {
        {3, "{\"key\":\"0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\",\"signature_chain\":[]}",
         VEIL_OK},
        {3, "{\"key\":\"4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\"}", VEIL_OK},
        {3, "{\"key\":\"4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f3623\"}", VEIL_ERR_MALFORMED},
        {3, "{\"key\":\"zz0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\"}", VEIL_ERR_MALFORMED},
        {3, "{\"key\":\"0000000000000000000000000000000000000000000000000000000000000000\"}", VEIL_ERR_MALFORMED},
        {3, "{\"key\":\"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141\"}", VEIL_ERR_MALFORMED},
        {3, "{\"key\":7}", VEIL_ERR_MALFORMED},
        {3, "{}", VEIL_ERR_MALFORMED},
        {1, NULL, VEIL_ERR_IO},
        {2, NULL, VEIL_ERR_IO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agent a;
        pthread_t th;
        veil_provider_free(fake_agent(&a, cases[i].mode, &th));
        a.reply = cases[i].reply;
        veil_seckey key;
        veil_err err;
        veil_rc rc = veil_dstack_get_key(a.path, "veil/instance-key/v1", &key, &err);
        pthread_join(th, NULL);
        close(a.listen_fd);
        if (rc != cases[i].want)
            fail_msg("case %zu: %d (%s), want %d", i, rc, rc ? err.message : "", cases[i].want);
        assert_non_null(strstr(a.request, "POST /GetKey"));
        assert_non_null(strstr(a.request, "\"path\":\"veil/instance-key/v1\""));
        if (rc == VEIL_OK) {
            uint8_t want[32];
            unhex(want, 32, "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
            assert_memory_equal(key.bytes, want, 32);
        }
    }
    veil_seckey key;
    assert_int_equal(veil_dstack_get_key("/nonexistent/dstack.sock", "p", &key, NULL), VEIL_ERR_IO);
}

static void sim_provider_events(void **state) {
    (void)state;
    veil_provider_config cfg = {NULL, NULL, dir, NULL};
    veil_quote_provider *p;
    assert_int_equal(veil_provider_open(&p, VEIL_TEE_SIM, &cfg, NULL), VEIL_OK);
    assert_int_equal(veil_provider_add_event(p, "app-id", (const uint8_t *)"veil", 4, NULL), VEIL_OK);
    uint8_t rd[64], *quote;
    size_t len;
    char *log;
    report_data(rd, 70);
    assert_int_equal(veil_provider_get_quote(p, &quote, &len, &log, rd, NULL), VEIL_OK);
    assert_non_null(strstr(log, "\"app-id\""));
    free(quote);
    free(log);
    veil_provider_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(configfs_quote),
        cmocka_unit_test(configfs_generation_changed_once),
        cmocka_unit_test(configfs_generation_keeps_changing),
        cmocka_unit_test(configfs_wrong_report_data),
        cmocka_unit_test(configfs_absent),
        cmocka_unit_test(dstack_quote),
        cmocka_unit_test(dstack_failures),
        cmocka_unit_test(dstack_key),
        cmocka_unit_test(sim_provider_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
