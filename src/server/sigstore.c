/* The signature store: signed response records in SQLite (WAL) under the
 * state directory, kept for a retention period and across restarts, each
 * with the address of the key that signed it (a restart makes a new key).
 * Only hashes, signatures and addresses are stored, never a request or
 * response body. Records are never replaced. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "server.h"
#include "veil/eth.h"

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
    free(s);
}

veil_rc veil_sigstore_put(veil_sigstore *s, const veil_signature_record *r, veil_err *err) {
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
