/* Quote providers: configfs-tsm, the dstack guest agent (HTTP over its unix
 * socket, through libcurl), and the simulator. */
#include "veil/provider.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/base.h"
#include "dstack.h"
#include "veil/buf.h"
#include "veil/eventlog.h"
#include "veil/hex.h"
#include "veil/quote.h"

#define MAX_QUOTE (64 * 1024)
#define CONFIGFS_ATTEMPTS 3

struct veil_quote_provider {
    veil_tee_kind kind;
    pthread_mutex_t lock;
    char path[1024];   /* configfs entry or dstack socket */
    int created_entry; /* configfs: rmdir the entry at the end */
    veil_sim *sim;
    veil_event_log *runtime; /* simulator: RTMR3 events */
};

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_socket(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISSOCK(st.st_mode);
}

veil_rc veil_provider_open(veil_quote_provider **out, veil_tee_kind kind, const veil_provider_config *cfg,
                           veil_err *err) {
    *out = NULL;
    const char *configfs = cfg && cfg->configfs_path ? cfg->configfs_path : VEIL_CONFIGFS_TSM_REPORT;
    const char *sock = cfg && cfg->dstack_socket ? cfg->dstack_socket : VEIL_DSTACK_SOCKET;
    if (kind == VEIL_TEE_AUTO)
        kind = is_dir(configfs) ? VEIL_TEE_TDX : is_socket(sock) ? VEIL_TEE_DSTACK : VEIL_TEE_SIM;
    veil_quote_provider *p = calloc(1, sizeof *p);
    if (!p)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    p->kind = kind;
    pthread_mutex_init(&p->lock, NULL);
    veil_rc rc = VEIL_OK;
    if (kind == VEIL_TEE_TDX) {
        if (!is_dir(configfs))
            rc = veil_err_set(err, VEIL_ERR_IO, "configfs-tsm is not available at %s (not a TDX guest, or Linux < 6.7)",
                              configfs);
        else if ((size_t)snprintf(p->path, sizeof p->path, "%s/veil-%ld", configfs, (long)getpid()) >= sizeof p->path)
            rc = veil_err_set(err, VEIL_ERR_IO, "configfs-tsm path is too long");
        else if (mkdir(p->path, 0700) == 0)
            p->created_entry = 1;
        else if (errno != EEXIST)
            rc = veil_err_set(err, VEIL_ERR_IO, "cannot create the configfs-tsm report %s: %s", p->path,
                              strerror(errno));
    } else if (kind == VEIL_TEE_DSTACK) {
        if (!is_socket(sock))
            rc = veil_err_set(err, VEIL_ERR_IO, "no dstack guest agent socket at %s", sock);
        else
            snprintf(p->path, sizeof p->path, "%s", sock);
    } else {
        if (!cfg || !cfg->state_dir)
            rc = veil_err_set(err, VEIL_ERR_INVALID_ARG, "the simulated TEE needs a state directory");
        else if ((rc = veil_sim_open(&p->sim, cfg->state_dir, cfg->sim, err)) == VEIL_OK &&
                 !(p->runtime = veil_event_log_new()))
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    if (rc != VEIL_OK) {
        veil_provider_free(p);
        return rc;
    }
    *out = p;
    return VEIL_OK;
}

void veil_provider_free(veil_quote_provider *p) {
    if (!p)
        return;
    if (p->created_entry)
        rmdir(p->path);
    veil_sim_free(p->sim);
    veil_event_log_free(p->runtime);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

const char *veil_provider_name(const veil_quote_provider *p) {
    return p->kind == VEIL_TEE_TDX ? "intel-tdx" : p->kind == VEIL_TEE_DSTACK ? "dstack" : "veil-simulated";
}

int veil_provider_is_simulated(const veil_quote_provider *p) { return p->kind == VEIL_TEE_SIM; }

veil_sim *veil_provider_sim(veil_quote_provider *p) { return p->sim; }

veil_rc veil_provider_add_event(veil_quote_provider *p, const char *name, const uint8_t *payload, size_t len,
                                veil_err *err) {
    if (p->kind != VEIL_TEE_SIM)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "%s: runtime events are extended by the platform, not by veil",
                            veil_provider_name(p));
    pthread_mutex_lock(&p->lock);
    veil_rc rc = veil_event_log_add_runtime(p->runtime, name, payload, len, err);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* configfs attributes are small files; generation is a decimal counter. */
static int read_counter(const char *entry, unsigned long long *out) {
    char path[1100], buf[32];
    snprintf(path, sizeof path, "%s/generation", entry);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fgets(buf, sizeof buf, f) != NULL && sscanf(buf, "%llu", out) == 1;
    fclose(f);
    return ok;
}

static veil_rc configfs_quote(veil_quote_provider *p, const uint8_t rd[64], uint8_t **quote, size_t *len,
                              veil_err *err) {
    char in[1100], out[1100];
    snprintf(in, sizeof in, "%s/inblob", p->path);
    snprintf(out, sizeof out, "%s/outblob", p->path);
    for (int attempt = 0; attempt < CONFIGFS_ATTEMPTS; attempt++) {
        unsigned long long g0, g1;
        if (!read_counter(p->path, &g0))
            return veil_err_set(err, VEIL_ERR_IO, "cannot read %s/generation", p->path);
        int fd = open(in, O_WRONLY | O_TRUNC);
        ssize_t w = fd >= 0 ? write(fd, rd, 64) : -1;
        if (fd < 0 || w != 64 || close(fd) != 0)
            return veil_err_set(err, VEIL_ERR_IO, "cannot write %s: %s", in, strerror(errno));
        FILE *f = fopen(out, "rb");
        if (!f)
            return veil_err_set(err, VEIL_ERR_IO, "cannot read %s: %s", out, strerror(errno));
        uint8_t *buf = malloc(MAX_QUOTE + 1);
        size_t n = buf ? fread(buf, 1, MAX_QUOTE + 1, f) : 0;
        int bad = !buf || ferror(f) || n == 0 || n > MAX_QUOTE;
        fclose(f);
        if (bad) {
            free(buf);
            return veil_err_set(err, VEIL_ERR_IO, "%s gave no quote (or more than %d bytes)", out, MAX_QUOTE);
        }
        if (!read_counter(p->path, &g1)) {
            free(buf);
            return veil_err_set(err, VEIL_ERR_IO, "cannot read %s/generation", p->path);
        }
        if (g1 == g0 + 1) {
            *quote = buf;
            *len = n;
            return VEIL_OK;
        }
        free(buf); /* another writer used the entry between our write and read */
    }
    return veil_err_set(err, VEIL_ERR_IO,
                        "configfs-tsm: the generation counter kept changing under us (%d attempts); refusing a quote "
                        "that may be for another request",
                        CONFIGFS_ATTEMPTS);
}

/* POSTs a JSON body to the dstack guest agent at sock (path e.g. "/GetQuote"): the reply's JSON
 * document in *out, or an error. */
static veil_rc dstack_post(const char *sock, const char *path, const char *body, size_t limit, json_t **out,
                           veil_err *err) {
    *out = NULL;
    char url[128];
    snprintf(url, sizeof url, "http://localhost%s", path);
    veil_buf resp = {.limit = limit, .secret = 1}; /* a GetKey reply holds a key */
    long status = 0;
    veil_err e;
    veil_rc rc = veil_http_exchange(url, sock, body, 30, 1, &resp, &status, &e);
    if (rc != VEIL_OK || status != 200)
        rc = veil_err_set(err, VEIL_ERR_IO, "dstack guest agent at %s: %s", sock,
                          rc != VEIL_OK ? e.message : "request refused");
    else if (!(*out = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL)))
        rc = veil_err_set(err, VEIL_ERR_IO, "dstack guest agent at %s: the reply is not JSON", sock);
    veil_buf_free(&resp);
    return rc;
}

static veil_rc dstack_quote(veil_quote_provider *p, const uint8_t rd[64], uint8_t **quote, size_t *len,
                            char **event_log, veil_err *err) {
    char hex[129], body[160];
    veil_hex_encode(hex, rd, 64);
    snprintf(body, sizeof body, "{\"report_data\":\"%s\"}", hex);
    json_t *root = NULL;
    veil_rc rc = dstack_post(p->path, "/GetQuote", body, 4 * MAX_QUOTE + 1024 * 1024, &root, err);
    if (rc == VEIL_OK) {
        const char *qhex = json_string_value(json_object_get(root, "quote"));
        json_t *log = json_object_get(root, "event_log");
        size_t qlen = qhex ? strlen(qhex) : 0;
        if (qlen >= 2 && qhex[0] == '0' && qhex[1] == 'x') {
            qhex += 2;
            qlen -= 2;
        }
        if (!qhex || !veil_hex_is_valid(qhex, qlen) || qlen / 2 > MAX_QUOTE) {
            rc = veil_err_set(err, VEIL_ERR_IO, "dstack guest agent answered without a hex quote");
        } else if (!(*quote = malloc(qlen / 2))) {
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        } else {
            rc = veil_hex_decode(*quote, qlen / 2, len, qhex, qlen, err);
            if (rc == VEIL_OK && log)
                *event_log = json_is_string(log) ? strdup(json_string_value(log)) : json_dumps(log, JSON_COMPACT);
        }
    }
    json_decref(root);
    return rc;
}

veil_rc veil_dstack_get_key(const char *socket_path, const char *key_path, veil_seckey *out, veil_err *err) {
    const char *sock = socket_path ? socket_path : VEIL_DSTACK_SOCKET;
    json_t *req = json_pack("{s:s, s:s, s:s}", "path", key_path, "purpose", "signing", "algorithm", "secp256k1");
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    json_t *root = NULL;
    veil_rc rc = dstack_post(sock, "/GetKey", body, 1 << 20, &root, err);
    free(body);
    if (rc == VEIL_OK) {
        const char *hex = json_string_value(json_object_get(root, "key"));
        if (hex && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X'))
            hex += 2;
        if (!hex || strlen(hex) != 2 * VEIL_SECKEY_LEN || veil_seckey_from_hex(out, hex, strlen(hex), NULL) != VEIL_OK)
            rc = veil_err_set(err, VEIL_ERR_MALFORMED,
                              "dstack key service at %s answered without a 32-byte secp256k1 key", sock);
    }
    json_decref(root); /* the key's text is in jansson's blocks: veil serve's allocator wipes them */
    return rc;
}

veil_rc veil_provider_get_quote(veil_quote_provider *p, uint8_t **quote, size_t *quote_len, char **event_log_json,
                                const uint8_t report_data[64], veil_err *err) {
    *quote = NULL;
    *quote_len = 0;
    *event_log_json = NULL;
    pthread_mutex_lock(&p->lock);
    veil_rc rc;
    if (p->kind == VEIL_TEE_TDX) {
        rc = configfs_quote(p, report_data, quote, quote_len, err);
    } else if (p->kind == VEIL_TEE_DSTACK) {
        rc = dstack_quote(p, report_data, quote, quote_len, event_log_json, err);
    } else {
        rc = veil_sim_quote(p->sim, quote, quote_len, report_data, p->runtime, err);
        if (rc == VEIL_OK && !(*event_log_json = veil_event_log_to_json(p->runtime)))
            rc = veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_unlock(&p->lock);
    /* Never hand out a quote for other report data than asked for. */
    veil_quote q;
    veil_quote_code why;
    if (rc == VEIL_OK && veil_quote_parse(&q, *quote, *quote_len, &why, err) != VEIL_OK)
        rc = VEIL_ERR_MALFORMED;
    else if (rc == VEIL_OK &&
             memcmp(q.body_type == VEIL_BODY_SGX ? q.enclave.report_data : q.td.report_data, report_data, 64) != 0)
        rc = veil_err_set(err, VEIL_ERR_MALFORMED, "%s returned a quote for other report data", veil_provider_name(p));
    if (rc != VEIL_OK) {
        free(*quote);
        free(*event_log_json);
        *quote = NULL;
        *event_log_json = NULL;
        *quote_len = 0;
    }
    return rc;
}
