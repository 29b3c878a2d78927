/* The signature store: signed response records in SQLite (WAL) under the
 * state directory, or in Redis shared by every replica (a key
 * veil:sig:<request id> holding the record as JSON, set only if absent,
 * expiring after the retention), kept for a retention period and across
 * restarts, each with the address of the key that signed it (a restart
 * without a shared key makes a new key). Only hashes, signatures and
 * addresses are stored, never a request or response body. Records are
 * never replaced. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <sqlite3.h>

#include "server.h"
#include "veil/eth.h"

struct veil_sigstore {
    sqlite3 *db;
    veil_redis *redis; /* instead of db */
    long retention;
    long puts;
};

veil_rc veil_sigstore_open(veil_sigstore **out, const char *path, long retention_s, veil_err *err) {
    *out = NULL;
    veil_sigstore *s = calloc(1, sizeof *s);
    if (!s)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    s->retention = retention_s > 0 ? retention_s : 3600;
    if (veil_store_is_redis(path)) {
        veil_rc rc = veil_redis_open(&s->redis, path, 2000, err);
        if (rc != VEIL_OK) {
            free(s);
            return rc;
        }
        *out = s;
        return VEIL_OK;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS signatures (request_id TEXT PRIMARY KEY, model TEXT NOT NULL,"
                     " text TEXT NOT NULL, signature TEXT NOT NULL, near_text TEXT NOT NULL,"
                     " near_signature TEXT NOT NULL, created INTEGER NOT NULL, signing_address TEXT);"
                     "CREATE INDEX IF NOT EXISTS signatures_created ON signatures(created);"
                     "CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        veil_rc rc = veil_err_set(err, VEIL_ERR_IO, "signature store %s: %s", path,
                                  s->db ? sqlite3_errmsg(s->db) : "cannot open");
        veil_sigstore_close(s);
        return rc;
    }
    /* a store made before records kept their signer: the column is added (and such records'
     * signer is recovered from their signature when they are read) */
    sqlite3_exec(s->db, "ALTER TABLE signatures ADD COLUMN signing_address TEXT", NULL, NULL, NULL);
    *out = s;
    return VEIL_OK;
}

void veil_sigstore_close(veil_sigstore *s) {
    if (!s)
        return;
    sqlite3_close(s->db);
    veil_redis_close(s->redis);
    free(s);
}

int veil_sigstore_shared(const veil_sigstore *s) { return s->redis != NULL; }

static veil_rc redis_put(veil_sigstore *s, const veil_signature_record *r, veil_err *err) {
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "model", r->model, "text", r->text, "signature",
                            r->signature, "near_text", r->near_text, "near_signature", r->near_signature,
                            "signing_address", r->signing_address, "created", (json_int_t)time(NULL));
    char *json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!json)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    redisReply *rep =
        veil_redis_command(s->redis, err, "SET veil:sig:%s %s NX EX %ld", r->request_id, json, s->retention);
    free(json);
    if (!rep)
        return VEIL_ERR_IO;
    int stored = rep->type == REDIS_REPLY_STATUS; /* "OK"; nil when the id is stored already */
    veil_redis_reply_free(rep);
    return stored ? VEIL_OK
                  : veil_err_set(err, VEIL_ERR_IO, "signature store: request id %s is stored already", r->request_id);
}

static char *field(json_t *doc, const char *key) {
    const char *v = json_string_value(json_object_get(doc, key));
    return strdup(v ? v : "");
}

static int redis_get(veil_sigstore *s, const char *request_id, veil_signature_record *out) {
    redisReply *rep = veil_redis_command(s->redis, NULL, "GET veil:sig:%s", request_id);
    if (!rep)
        return 0;
    json_t *doc = rep->type == REDIS_REPLY_STRING ? json_loadb(rep->str, rep->len, 0, NULL) : NULL;
    veil_redis_reply_free(rep);
    json_int_t created = json_integer_value(json_object_get(doc, "created"));
    int found = json_is_object(doc) && created >= (json_int_t)time(NULL) - s->retention;
    if (found) {
        out->request_id = strdup(request_id);
        out->model = field(doc, "model");
        out->text = field(doc, "text");
        out->signature = field(doc, "signature");
        out->near_text = field(doc, "near_text");
        out->near_signature = field(doc, "near_signature");
        out->signing_address = field(doc, "signing_address");
    }
    json_decref(doc);
    return found;
}

veil_rc veil_sigstore_put(veil_sigstore *s, const veil_signature_record *r, veil_err *err) {
    if (s->redis)
        return redis_put(s, r, err);
    sqlite3_stmt *st = NULL;
    /* a plain INSERT: a record is never replaced (a request id seen twice is a failure) */
    int ok = sqlite3_prepare_v2(s->db,
                                "INSERT INTO signatures (request_id, model, text, signature, near_text,"
                                " near_signature, signing_address, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                -1, &st, NULL) == SQLITE_OK;
    const char *v[7] = {r->request_id, r->model,          r->text,           r->signature,
                        r->near_text,  r->near_signature, r->signing_address};
    for (int i = 0; ok && i < 7; i++)
        ok = sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_TRANSIENT) == SQLITE_OK;
    ok = ok && sqlite3_bind_int64(st, 8, (sqlite3_int64)time(NULL)) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_IO, "signature store: %s", sqlite3_errmsg(s->db));
    if (++s->puts % 256 == 0) { /* now and then, forget what is past retention */
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM signatures WHERE created < %lld", (long long)time(NULL) - s->retention);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    }
    return VEIL_OK;
}

int veil_sigstore_probe(veil_sigstore *s) {
    if (s->redis) { /* a small write, as a put is */
        redisReply *rep = veil_redis_command(s->redis, NULL, "SET veil:health %lld EX 60", (long long)time(NULL));
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            veil_redis_reply_free(rep);
        return ok;
    }
    /* what a put writes: a record and its index entry, committed (then taken out again in the
     * same transaction, so the probe leaves nothing behind) */
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE;"
             "INSERT INTO signatures (request_id, model, text, signature, near_text, near_signature,"
             " signing_address, created) VALUES ('veil-store-probe', '', hex(randomblob(65)), hex(randomblob(65)),"
             " hex(randomblob(90)), hex(randomblob(65)), '', %lld);"
             "DELETE FROM signatures WHERE request_id = 'veil-store-probe';"
             "INSERT OR REPLACE INTO health (id, at) VALUES (1, %lld);"
             "COMMIT;",
             (long long)time(NULL), (long long)time(NULL));
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return 1;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return 0;
}

static char *col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

int veil_sigstore_get(veil_sigstore *s, const char *request_id, veil_signature_record *out) {
    memset(out, 0, sizeof *out);
    if (s->redis)
        return redis_get(s, request_id, out);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT request_id, model, text, signature, near_text, near_signature, signing_address"
                           " FROM signatures"
                           " WHERE request_id = ? AND created >= ?",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, request_id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL) - s->retention) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        out->request_id = col(st, 0);
        out->model = col(st, 1);
        out->text = col(st, 2);
        out->signature = col(st, 3);
        out->near_text = col(st, 4);
        out->near_signature = col(st, 5);
        out->signing_address = col(st, 6);
        found = 1;
    }
    sqlite3_finalize(st);
    if (found && !out->signing_address[0]) { /* a record from before signers were kept */
        uint8_t addr[VEIL_ADDRESS_LEN];
        char str[VEIL_ADDRESS_STR_LEN + 1] = "";
        if (veil_eip191_recover_address(addr, out->text, strlen(out->text), out->signature, strlen(out->signature),
                                        NULL) == VEIL_OK)
            veil_eth_address_to_string(str, addr);
        free((char *)out->signing_address);
        out->signing_address = strdup(str);
    }
    return found;
}

void veil_signature_record_clear(veil_signature_record *r) {
    free((char *)r->request_id);
    free((char *)r->model);
    free((char *)r->text);
    free((char *)r->signature);
    free((char *)r->near_text);
    free((char *)r->near_signature);
    free((char *)r->signing_address);
    memset(r, 0, sizeof *r);
}
