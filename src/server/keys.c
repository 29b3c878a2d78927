/* The API key store: SQLite under the state directory, or Redis shared by
 * every replica (the hash veil:api-keys, each field a key's id and its
 * value {"hash", "created", "revoked"} as JSON), holding only the SHA-256 of
 * each key, so that a copy of the store reveals no key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "server.h"
#include "veil/hex.h"
#include "veil/secure.h"

struct veil_keystore {
    sqlite3 *db;
    veil_redis *redis; /* instead of db */
};

#define REDIS_KEYS "veil:api-keys"

veil_rc veil_keystore_open(veil_keystore **out, const char *path, veil_err *err) {
    *out = NULL;
    veil_keystore *ks = calloc(1, sizeof *ks);
    if (!ks)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (veil_store_is_redis(path)) {
        veil_rc rc = veil_redis_open(&ks->redis, path, 2000, err);
        if (rc != VEIL_OK)
            free(ks);
        else
            *out = ks;
        return rc;
    }
    if (sqlite3_open_v2(path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(ks->db,
                     "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE,"
                     " created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        veil_rc rc =
            veil_err_set(err, VEIL_ERR_IO, "key store %s: %s", path, ks->db ? sqlite3_errmsg(ks->db) : "cannot open");
        veil_keystore_close(ks);
        return rc;
    }
    *out = ks;
    return VEIL_OK;
}

void veil_keystore_close(veil_keystore *ks) {
    if (!ks)
        return;
    sqlite3_close(ks->db);
    veil_redis_close(ks->redis);
    free(ks);
}

/* ---- the Redis form ---- */

/* Writes key id's record {"hash", "created", "revoked"} with HSETNX (only_new: never over
 * another; *taken says when the id was) or HSET. */
static veil_rc redis_put_key(veil_keystore *ks, int only_new, const char *id, const uint8_t h[32], long created,
                             int revoked, int *taken, veil_err *err) {
    char hex[65];
    veil_hex_encode(hex, h, 32);
    json_t *doc = json_pack("{s:s, s:I, s:b}", "hash", hex, "created", (json_int_t)created, "revoked", revoked);
    char *json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!json)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    redisReply *rep = veil_redis_command(
        ks->redis, err, only_new ? "HSETNX " REDIS_KEYS " %s %s" : "HSET " REDIS_KEYS " %s %s", id, json);
    free(json);
    if (!rep)
        return VEIL_ERR_IO;
    *taken = only_new && !(rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
    veil_redis_reply_free(rep);
    return VEIL_OK;
}

static veil_rc redis_insert(veil_keystore *ks, const char *id, const uint8_t h[32], veil_err *err) {
    int taken = 0;
    veil_rc rc = redis_put_key(ks, 1, id, h, (long)time(NULL), 0, &taken, err);
    return rc == VEIL_OK && taken ? veil_err_set(err, VEIL_ERR_IO, "key store: id %s exists", id) : rc;
}

typedef struct redis_key {
    char id[17];
    long created;
    int revoked;
    uint8_t hash[32];
} redis_key;

static int by_created(const void *a, const void *b) {
    const redis_key *x = a, *y = b;
    return x->created != y->created ? (x->created < y->created ? -1 : 1) : strcmp(x->id, y->id);
}

/* Every well-formed key of the hash, oldest first: *n of them (malloc'd), or NULL with err. */
static redis_key *redis_all(veil_keystore *ks, size_t *n, veil_err *err) {
    *n = 0;
    redisReply *rep = veil_redis_command(ks->redis, err, "HGETALL " REDIS_KEYS);
    if (!rep)
        return NULL;
    redis_key *keys = rep->type == REDIS_REPLY_ARRAY ? calloc(rep->elements / 2 + 1, sizeof *keys) : NULL;
    if (!keys) {
        veil_redis_reply_free(rep);
        veil_err_set(err, VEIL_ERR_IO, "key store: unexpected reply from Redis");
        return NULL;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *id = rep->element[i], *v = rep->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || id->len > 16)
            continue;
        json_t *doc = json_loadb(v->str, v->len, 0, NULL);
        const char *hex = json_string_value(json_object_get(doc, "hash"));
        redis_key *k = &keys[*n];
        if (hex && strlen(hex) == 64 && veil_hex_decode(k->hash, 32, NULL, hex, 64, NULL) == VEIL_OK) {
            memcpy(k->id, id->str, id->len);
            k->created = (long)json_integer_value(json_object_get(doc, "created"));
            k->revoked = json_is_true(json_object_get(doc, "revoked"));
            (*n)++;
        }
        json_decref(doc);
    }
    veil_redis_reply_free(rep);
    qsort(keys, *n, sizeof *keys, by_created);
    return keys;
}

static veil_rc redis_revoke(veil_keystore *ks, const char *id, veil_err *err) {
    size_t n;
    redis_key *keys = redis_all(ks, &n, err);
    if (!keys)
        return VEIL_ERR_IO;
    redis_key *k = NULL;
    for (size_t i = 0; i < n && !k; i++)
        if (!strcmp(keys[i].id, id) && !keys[i].revoked)
            k = &keys[i];
    veil_rc rc = VEIL_OK;
    if (!k) {
        rc = veil_err_set(err, VEIL_ERR_INVALID_ARG, "no active key with id %s", id);
    } else {
        int taken;
        rc = redis_put_key(ks, 0, id, k->hash, k->created, 1, &taken, err);
    }
    free(keys);
    return rc;
}

static void hash(const char *secret, uint8_t out[32]) {
    EVP_Digest(secret, strlen(secret), out, NULL, EVP_sha256(), NULL);
}

veil_rc veil_keystore_create(veil_keystore *ks, char **secret, char id[17], veil_err *err) {
    uint8_t raw[24], h[32], idraw[8];
    veil_rc rc = veil_random_bytes(raw, sizeof raw, err);
    if (rc == VEIL_OK)
        rc = veil_random_bytes(idraw, sizeof idraw, err);
    if (rc != VEIL_OK)
        return rc;
    char *s = malloc(3 + 2 * sizeof raw + 1);
    if (!s)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    memcpy(s, "vk-", 3);
    veil_hex_encode(s + 3, raw, sizeof raw);
    veil_wipe(raw, sizeof raw);
    veil_hex_encode(id, idraw, sizeof idraw);
    hash(s, h);
    if (ks->redis) {
        veil_rc irc = redis_insert(ks, id, h, err);
        if (irc != VEIL_OK)
            veil_free_secret(s, strlen(s));
        else
            *secret = s;
        return irc;
    }
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ks->db, "INSERT INTO api_keys (id, hash, created) VALUES (?, ?, ?)", -1, &st, NULL) ==
                 SQLITE_OK &&
             sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
             sqlite3_bind_blob(st, 2, h, 32, SQLITE_TRANSIENT) == SQLITE_OK &&
             sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL)) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) {
        veil_free_secret(s, strlen(s));
        return veil_err_set(err, VEIL_ERR_IO, "key store: %s", sqlite3_errmsg(ks->db));
    }
    *secret = s;
    return VEIL_OK;
}

veil_rc veil_keystore_revoke(veil_keystore *ks, const char *id, veil_err *err) {
    if (ks->redis)
        return redis_revoke(ks, id, err);
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ks->db, "UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0", -1, &st,
                                NULL) == SQLITE_OK &&
             sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_IO, "key store: %s", sqlite3_errmsg(ks->db));
    if (sqlite3_changes(ks->db) == 0)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "no active key with id %s", id);
    return VEIL_OK;
}

int veil_keystore_list(veil_keystore *ks, void (*fn)(void *, const char *, long, int), void *ctx) {
    if (ks->redis) {
        size_t n;
        redis_key *keys = redis_all(ks, &n, NULL);
        if (!keys)
            return -1;
        int active = 0;
        for (size_t i = 0; i < n; i++) {
            active += !keys[i].revoked;
            if (fn)
                fn(ctx, keys[i].id, keys[i].created, keys[i].revoked);
        }
        free(keys);
        return active;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "SELECT id, created, revoked FROM api_keys ORDER BY created, id", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    int active = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int revoked = sqlite3_column_int(st, 2);
        active += !revoked;
        if (fn)
            fn(ctx, (const char *)sqlite3_column_text(st, 0), (long)sqlite3_column_int64(st, 1), revoked);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? active : -1;
}

veil_rc veil_keystore_hashes(veil_keystore *ks, uint8_t (**hashes)[32], size_t *n, veil_err *err) {
    *hashes = NULL;
    *n = 0;
    if (ks->redis) {
        size_t all;
        redis_key *keys = redis_all(ks, &all, err);
        if (!keys)
            return VEIL_ERR_IO;
        if (!(*hashes = malloc((all + 1) * 32))) {
            free(keys);
            return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < all; i++)
            if (!keys[i].revoked)
                memcpy((*hashes)[(*n)++], keys[i].hash, 32);
        free(keys);
        return VEIL_OK;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "SELECT hash FROM api_keys WHERE revoked = 0", -1, &st, NULL) != SQLITE_OK)
        return veil_err_set(err, VEIL_ERR_IO, "key store: %s", sqlite3_errmsg(ks->db));
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            uint8_t(*grown)[32] = realloc(*hashes, cap * 32);
            if (!grown) {
                sqlite3_finalize(st);
                free(*hashes);
                *hashes = NULL;
                *n = 0;
                return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
            }
            *hashes = grown;
        }
        memcpy((*hashes)[(*n)++], sqlite3_column_blob(st, 0), 32);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*hashes);
        *hashes = NULL;
        *n = 0;
        return veil_err_set(err, VEIL_ERR_IO, "key store: %s", sqlite3_errmsg(ks->db));
    }
    return VEIL_OK;
}
