/* Helpers shared by the veil subcommands: error reporting, stdin, dispatch. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "veil/buf.h"
#include "veil/secure.h"

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("veil: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_fail_err(const char *what, const veil_err *err) {
    return cli_fail("%s: %s", what, err->message[0] ? err->message : veil_rc_str(err->code));
}

int cli_usage_error(const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("veil: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s'.\n", hint);
    va_end(ap);
    return CLI_USAGE;
}

uint8_t *cli_read_stdin(size_t limit, size_t *len) {
    /* stdin may hold plaintext: a wiping buffer leaves no copies behind as it grows */
    veil_buf b = {.limit = limit, .secret = 1};
    char chunk[4096];
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, stdin);
        if (got && !veil_buf_append(&b, chunk, got)) {
            int over = b.len + got > limit;
            veil_buf_free(&b);
            veil_wipe(chunk, sizeof chunk);
            over ? cli_fail("input is larger than %zu bytes", limit) : cli_fail("out of memory");
            return NULL;
        }
        if (got < sizeof chunk) {
            if (ferror(stdin)) {
                veil_buf_free(&b);
                veil_wipe(chunk, sizeof chunk);
                cli_fail("could not read standard input");
                return NULL;
            }
            if (feof(stdin))
                break;
        }
    }
    veil_wipe(chunk, sizeof chunk);
    if (!b.data && !veil_buf_append(&b, "", 0)) {
        cli_fail("out of memory");
        return NULL;
    }
    *len = b.len;
    return (uint8_t *)b.data;
}

const char *cli_trim(const char *s, size_t *len) {
    size_t n = *len;
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

int cli_dispatch(const char *group, const cli_command *cmds, size_t n, int argc, char **argv, void (*help)(void)) {
    char hint[64];
    snprintf(hint, sizeof hint, "%s --help", group);
    if (argc < 2)
        return cli_usage_error(hint, "%s needs a command", group);
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        help();
        return CLI_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cmds[i].name, name))
            return cmds[i].run(argc - 1, argv + 1);
    return cli_usage_error(hint, "unknown command '%s %s'", group, name);
}

int cli_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        buf[i] = c;
    }
    return 0;
}

const char *cli_state_dir(void) {
    static char dir[4096];
    const char *v = getenv("VEIL_STATE_DIR"), *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (v && *v)
        snprintf(dir, sizeof dir, "%s", v);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/veil", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.local/state/veil", home);
    else
        return NULL;
    cli_mkdir_p(dir); /* a fresh machine has no ~/.local/state yet */
    return dir;
}

uint8_t *cli_read_file(const char *path, size_t limit, size_t *len) {
    if (!strcmp(path, "-"))
        return cli_read_stdin(limit, len);
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit + 1, f) : 0;
    int err = !buf || ferror(f);
    fclose(f);
    if (err || n > limit) {
        free(buf);
        if (err)
            cli_fail("cannot read %s", path);
        else
            cli_fail("%s is larger than the %zu KiB this accepts", path, limit >> 10);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int cli_load_policy(const char *path, veil_quote_policy *policy, const char *hint) {
    size_t n;
    veil_err err;
    char *t = (char *)cli_read_file(path, CLI_DOC_LIMIT, &n);
    if (!t)
        return CLI_USAGE;
    int ok = veil_policy_parse(policy, t, n, &err) == VEIL_OK;
    free(t);
    return ok ? CLI_OK : cli_usage_error(hint, "%s: %s", path, err.message);
}

int cli_load_collateral(const char *path, veil_collateral **col, const char *hint) {
    size_t n;
    veil_err err;
    char *t = (char *)cli_read_file(path, CLI_DOC_LIMIT, &n);
    if (!t)
        return CLI_USAGE;
    int ok = veil_collateral_parse(col, t, n, &err) == VEIL_OK;
    free(t);
    return ok ? CLI_OK : cli_usage_error(hint, "%s: %s", path, err.message);
}

int cli_load_cert_der(const char *path, uint8_t **der, size_t *len, const char *hint) {
    size_t n;
    uint8_t *file = cli_read_file(path, CLI_DOC_LIMIT, &n);
    if (!file)
        return CLI_USAGE;
    BIO *bio = BIO_new_mem_buf(file, (int)n);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (!x) {
        const unsigned char *p = file;
        x = d2i_X509(NULL, &p, (long)n);
    }
    BIO_free(bio);
    free(file);
    unsigned char *d = NULL;
    int dl = x ? i2d_X509(x, &d) : -1;
    X509_free(x);
    if (dl <= 0)
        return cli_usage_error(hint, "%s is not a PEM or DER certificate", path);
    *der = d;
    *len = (size_t)dl;
    return CLI_OK;
}

static const char *program = "veil";

void cli_set_program(const char *argv0) {
    if (argv0 && *argv0)
        program = argv0;
}

const char *cli_program(void) { return program; }
