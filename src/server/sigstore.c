/* The signature store: signed response records in SQLite (WAL) under the
 * state directory, kept for a retention period and across restarts. Only
 * hashes and signatures are stored, never a request or response body. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "server.h"

struct veil_sigstore {
    sqlite3 *db;
    long retention;
    long puts;
};

veil_rc veil_sigstore_open(veil_sigstore **out, const char *path, long retention_s, veil_err *err) {
    *out = NULL;
    veil_sigstore *s = calloc(1, sizeof *s);
    if (!s)
        return veil_err_set(err, VEIL_ERR_NOMEM, "out of memory");
    s->retention = retention_s > 0 ? retention_s : 3600;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS signatures (request_id TEXT PRIMARY KEY, model TEXT NOT NULL,"
                     " text TEXT NOT NULL, signature TEXT NOT NULL, near_text TEXT NOT NULL,"
                     " near_signature TEXT NOT NULL, created INTEGER NOT NULL);"
                     "CREATE INDEX IF NOT EXISTS signatures_created ON signatures(created);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        veil_rc rc = veil_err_set(err, VEIL_ERR_IO, "signature store %s: %s", path,
                                  s->db ? sqlite3_errmsg(s->db) : "cannot open");
        veil_sigstore_close(s);
        return rc;
    }
    *out = s;
    return VEIL_OK;
}

void veil_sigstore_close(veil_sigstore *s) {
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

veil_rc veil_sigstore_put(veil_sigstore *s, const veil_signature_record *r, veil_err *err) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(s->db,
                                "INSERT OR REPLACE INTO signatures (request_id, model, text, signature, near_text,"
                                " near_signature, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                -1, &st, NULL) == SQLITE_OK;
    const char *v[6] = {r->request_id, r->model, r->text, r->signature, r->near_text, r->near_signature};
    for (int i = 0; ok && i < 6; i++)
        ok = sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_TRANSIENT) == SQLITE_OK;
    ok = ok && sqlite3_bind_int64(st, 7, (sqlite3_int64)time(NULL)) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok)
        return veil_err_set(err, VEIL_ERR_IO, "signature store: %s", sqlite3_errmsg(s->db));
    if (++s->puts % 256 == 0) { /* now and then, forget what is past retention */
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM signatures WHERE created < %lld",
                 (long long)time(NULL) - s->retention);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    }
    return VEIL_OK;
}

static char *col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

int veil_sigstore_get(veil_sigstore *s, const char *request_id, veil_signature_record *out) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT request_id, model, text, signature, near_text, near_signature FROM signatures"
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
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

void veil_signature_record_clear(veil_signature_record *r) {
    free((char *)r->request_id);
    free((char *)r->model);
    free((char *)r->text);
    free((char *)r->signature);
    free((char *)r->near_text);
    free((char *)r->near_signature);
    memset(r, 0, sizeof *r);
}
