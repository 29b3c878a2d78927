/* Shared helpers for the veil command line: exit codes, errors, input. */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "veil/client.h"
#include "veil/err.h"

/* Exit statuses of every veil command; CLI_HELP is cli_parse's "help was
 * printed" (the command then exits with CLI_OK). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = 3 };

/* ---- the option layer (opt.c) ---- */

typedef enum cli_opt_type {
    CLI_OPT_STR,    /* const char **: the argument as given */
    CLI_OPT_CHOICE, /* const char **: one of the words of meta ("auto|tdx|none") */
    CLI_OPT_LIST,   /* cli_list *: repeatable, up to CLI_LIST_MAX */
    CLI_OPT_LONG,   /* long *: a whole number in [min, max] */
    CLI_OPT_INT,    /* int *: a whole number in [min, max] (within int) */
    CLI_OPT_U64,    /* uint64_t *: a whole number */
    CLI_OPT_DOUBLE, /* double *: a finite number in [min, max] */
    CLI_OPT_TIME,   /* int64_t *: a Unix time, > 0 */
    CLI_OPT_HEX32,  /* cli_hex32 *: 32 bytes as 64 hex characters */
    CLI_OPT_FLAG,   /* int *: set to 1; takes no argument */
    CLI_OPT_SET     /* int *: set to min; takes no argument (one of several modes) */
} cli_opt_type;

typedef struct cli_opt {
    const char *name; /* long name without "--" */
    cli_opt_type type;
    void *dest;
    const char *meta; /* the argument's name in help ("URL"); NULL for flags */
    const char *help; /* one line, or several separated by \n */
    long min, max;
    char short_name; /* a one-letter alias ("-n"), or 0 */
} cli_opt;

#define CLI_LIST_MAX 32
typedef struct cli_list {
    const char *v[CLI_LIST_MAX];
    size_t n;
} cli_list;

typedef struct cli_hex32 {
    uint8_t bytes[32];
    int set;
} cli_hex32;

// clang-format off: one table row a line
#define OPT_STR(name, dest, meta, help)                                                                                \
    { name, CLI_OPT_STR, dest, meta, help, 0, 0, 0 }
#define OPT_CHOICE(name, dest, choices, help)                                                                          \
    { name, CLI_OPT_CHOICE, dest, choices, help, 0, 0, 0 }
#define OPT_LIST(name, dest, meta, help)                                                                               \
    { name, CLI_OPT_LIST, dest, meta, help, 0, 0, 0 }
#define OPT_LONG(name, dest, lo, hi, meta, help)                                                                       \
    { name, CLI_OPT_LONG, dest, meta, help, lo, hi, 0 }
#define OPT_INT(name, dest, lo, hi, meta, help)                                                                        \
    { name, CLI_OPT_INT, dest, meta, help, lo, hi, 0 }
#define OPT_U64(name, dest, meta, help)                                                                                \
    { name, CLI_OPT_U64, dest, meta, help, 0, 0, 0 }
#define OPT_DOUBLE(name, dest, lo, hi, meta, help)                                                                     \
    { name, CLI_OPT_DOUBLE, dest, meta, help, lo, hi, 0 }
#define OPT_TIME(name, dest, help)                                                                                     \
    { name, CLI_OPT_TIME, dest, "UNIX", help, 0, 0, 0 }
#define OPT_HEX32(name, dest, help)                                                                                    \
    { name, CLI_OPT_HEX32, dest, "HEX", help, 0, 0, 0 }
#define OPT_FLAG(name, dest, help)                                                                                     \
    { name, CLI_OPT_FLAG, dest, NULL, help, 0, 0, 0 }
#define OPT_SET(name, dest, value, help)                                                                               \
    { name, CLI_OPT_SET, dest, NULL, help, value, value, 0 }

/* OPT_INT with a one-letter alias as well ("-n 64" and "--max-tokens 64"). */
#define OPT_INT_ALIAS(c, name, dest, lo, hi, meta, help)                                                               \
    { name, CLI_OPT_INT, dest, meta, help, lo, hi, c }
// clang-format on

/* A command's options and help. */
typedef struct cli_spec {
    const char *cmd;   /* "veil attest": for messages and the --help hint */
    const char *usage; /* after "Usage: " */
    const char *about; /* paragraphs after the usage; may be NULL */
    const cli_opt *opts;
    size_t n_opts;
} cli_spec;

#define CLI_SPEC(cmd, usage, about, opts)                                                                              \
    { cmd, usage, about, opts, sizeof opts / sizeof opts[0] }

/* Parses argv[1..argc) (argv[0] is the command's own name; options and
 * arguments may mix) into the table's destinations, each value checked.
 * Returns CLI_OK with *pos the index of the first positional argument in
 * argv (after the parse's reordering); CLI_HELP after printing --help; or
 * CLI_USAGE after printing what was wrong ("veil: ..." and the hint). */
int cli_parse(const cli_spec *spec, int argc, char **argv, int *pos);

/* Prints a command's help: usage, about, and the options from its table. */
void cli_print_help(const cli_spec *spec);

/* Where a client command connects: --base-url (default Venice's API) and
 * --api-key (default $VEIL_API_KEY, else $API_KEY_VENICE). */
typedef struct cli_endpoint {
    const char *base, *key;
    int tls_attested; /* --tls-attested: trust the TLS key the attestation binds, not certificate authorities */
} cli_endpoint;
void cli_endpoint_init(cli_endpoint *ep);
#define CLI_ENDPOINT_OPTS(ep)                                                                                          \
    OPT_STR("base-url", &(ep)->base, "URL", "the server's API base (default " VEIL_DEFAULT_BASE_URL ")"),              \
        OPT_STR("api-key", &(ep)->key, "KEY", "bearer key (default $VEIL_API_KEY, else $API_KEY_VENICE)"),             \
        OPT_FLAG("tls-attested", &(ep)->tls_attested,                                                                  \
                 "https: trust the TLS key the attestation binds (veil serve --tls) instead of certificate "           \
                 "authorities; the API key is sent only once that key is pinned")

/* A client for the endpoint (timeout_s per request), its TLS trust set. */
veil_rc cli_client_new(veil_client **out, const cli_endpoint *ep, long timeout_s, veil_err *err);

/* One subcommand: its name, one line of help, and its entry point, which
 * receives argv starting at the subcommand's own name. */
typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

/* Prints "veil: <message>" to stderr and returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) VEIL_PRINTF(1, 2);

/* Prints "veil: <err message>" to stderr and returns CLI_FAIL. */
int cli_fail_err(const char *what, const veil_err *err);

/* Prints "veil: <message>" and "Try '<usage hint>'." to stderr, returns CLI_USAGE. */
int cli_usage_error(const char *hint, const char *fmt, ...) VEIL_PRINTF(2, 3);

/* Reads all of stdin (at most `limit` bytes) into a NUL-terminated buffer
 * that the caller frees with veil_free_secret(buf, *len + 1).
 * Returns NULL (after printing why) on a read error or overflow. */
uint8_t *cli_read_stdin(size_t limit, size_t *len);

/* Reads a file ("-": stdin) of at most `limit` bytes into a malloc'd,
 * NUL-terminated buffer; NULL (after printing why: cannot open, cannot
 * read, or larger than the limit) on failure. Never truncates. */
uint8_t *cli_read_file(const char *path, size_t limit, size_t *len);

/* The limit on JSON documents read from files: policies, collateral. */
#define CLI_DOC_LIMIT ((size_t)4 << 20)

/* Reads and parses a policy or collateral file; CLI_OK, or CLI_USAGE after
 * printing why (hint: the command's --help). */
int cli_load_policy(const char *path, veil_quote_policy *policy, const char *hint);
int cli_load_collateral(const char *path, veil_collateral **col, const char *hint);

/* Reads a certificate (PEM or DER) as DER: *der is OpenSSL's (OPENSSL_free).
 * CLI_OK, or CLI_USAGE after printing why. */
int cli_load_cert_der(const char *path, uint8_t **der, size_t *len, const char *hint);

/* Returns s with ASCII whitespace trimmed at both ends; *len is updated. */
const char *cli_trim(const char *s, size_t *len);

/* Finds `name` in cmds[0..n) and runs it, or prints a usage error. `group`
 * names the command group ("veil crypto") for messages. */
int cli_dispatch(const char *group, const cli_command *cmds, size_t n, int argc, char **argv, void (*help)(void));

/* How veil was invoked (argv[0], e.g. "build/veil"), for commands printed
 * to be pasted; main sets it. */
void cli_set_program(const char *argv0);
const char *cli_program(void);

/* mkdir -p with mode 0700; 0 on success. */
int cli_mkdir_p(const char *path);

/* The state directory (made when missing): $VEIL_STATE_DIR, else $XDG_STATE_HOME/veil, else
 * $HOME/.local/state/veil. Returns a static buffer, or NULL without HOME. */
const char *cli_state_dir(void);

/* Subcommand groups. */
int cmd_crypto(int argc, char **argv);
int cmd_quote(int argc, char **argv);
int cmd_tee(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_attest(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_signature(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gpu(int argc, char **argv);

#endif
