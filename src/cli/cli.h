/* Shared helpers for the veil command line: exit codes, errors, input. */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

/* Exit statuses of every veil command. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

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
 * NUL-terminated buffer; NULL (after printing why) on failure. */
uint8_t *cli_read_file(const char *path, size_t limit, size_t *len);

/* Returns s with ASCII whitespace trimmed at both ends; *len is updated. */
const char *cli_trim(const char *s, size_t *len);

/* Finds `name` in cmds[0..n) and runs it, or prints a usage error. `group`
 * names the command group ("veil crypto") for messages. */
int cli_dispatch(const char *group, const cli_command *cmds, size_t n, int argc, char **argv,
                 void (*help)(void));

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
int cmd_models(int argc, char **argv);
int cmd_signature(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gpu(int argc, char **argv);

#endif
