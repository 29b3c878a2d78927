/* The API key store: SQLite under the state directory, holding only the
 * SHA-256 of each key, so that a copy of the store reveals no key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "server.h"
#include "veil/hex.h"
#include "veil/secure.h"

struct veil_keystore {
    sqlite3 *db;
};

veil_rc veil_keystore_open(veil_keystore **out, const char *path, veil_err *err) {
    *out = NULL;
    veil_keystore *ks = calloc(1, sizeof *ks);
    if (!ks)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    if (sqlite3_open_v2(path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(ks->db,
                     "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE,"
                     " created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        veil_rc rc = veil_err_set(err, VEIL_ERR_IO, "key store %s: %s", path, ks->db ? sqlite3_errmsg(ks->db) : "cannot open");
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
    free(ks);
}

static void hash(const char *secret, uint8_t out[32]) { EVP_Digest(secret, strlen(secret), out, NULL, EVP_sha256(), NULL); }

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
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ks->db, "UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0", -1, &st, NULL) ==
                 SQLITE_OK &&
             sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_IO, "key store: %s", sqlite3_errmsg(ks->db));
    if (sqlite3_changes(ks->db) == 0)
        return veil_err_set(err, VEIL_ERR_INVALID_ARG, "no active key with id %s", id);
    return VEIL_OK;
}

int veil_keystore_list(veil_keystore *ks, void (*fn)(void *, const char *, long, int), void *ctx) {
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
