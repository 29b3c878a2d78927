/* The option layer of every veil command: a table of options (type,
 * destination, help) parsed with getopt_long, each value checked and
 * converted in one place, errors and --help in one shape. */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "veil/hex.h"

void cli_endpoint_init(cli_endpoint *ep) {
    ep->base = VEIL_DEFAULT_BASE_URL;
    ep->key = getenv("VEIL_API_KEY");
    if (!ep->key || !*ep->key)
        ep->key = getenv("API_KEY_VENICE");
}

veil_rc cli_client_new(veil_client **out, const cli_endpoint *ep, long timeout_s, veil_err *err) {
    veil_rc rc = veil_client_new(out, ep->base, ep->key, timeout_s, err);
    if (rc == VEIL_OK && ep->tls_attested)
        veil_client_set_tls_trust(*out, VEIL_TLS_ATTESTED);
    return rc;
}

/* The argument's text in help: "--name META". */
static int opt_width(const cli_opt *o) {
    return (o->short_name ? 6 : 2) + (int)strlen(o->name) + (o->meta ? 1 + (int)strlen(o->meta) : 0);
}

void cli_print_help(const cli_spec *spec) {
    printf("Usage: %s\n", spec->usage);
    if (spec->about)
        printf("\n%s\n", spec->about);
    if (!spec->n_opts)
        return;
    int w = 0;
    for (size_t i = 0; i < spec->n_opts; i++)
        if (opt_width(&spec->opts[i]) > w)
            w = opt_width(&spec->opts[i]);
    if (w > 26)
        w = 26;
    printf("\nOptions:\n");
    for (size_t i = 0; i < spec->n_opts; i++) {
        const cli_opt *o = &spec->opts[i];
        char head[96];
        if (o->short_name)
            snprintf(head, sizeof head, "-%c, --%s%s%s", o->short_name, o->name, o->meta ? " " : "",
                     o->meta ? o->meta : "");
        else
            snprintf(head, sizeof head, "--%s%s%s", o->name, o->meta ? " " : "", o->meta ? o->meta : "");
        const char *h = o->help ? o->help : "";
        if ((int)strlen(head) > w)
            printf("  %s\n  %-*s  ", head, w, "");
        else
            printf("  %-*s  ", w, head);
        for (const char *p = h; *p; p++) { /* continuation lines of the help line up */
            putchar(*p);
            if (*p == '\n')
                printf("  %-*s  ", w, "");
        }
        putchar('\n');
    }
}

/* Converts and stores one option's value; returns CLI_OK or the usage error it printed. */
static int store(const cli_spec *spec, const cli_opt *o, const char *arg) {
    char hint[80];
    snprintf(hint, sizeof hint, "%s --help", spec->cmd);
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_OPT_STR: *(const char **)o->dest = arg; return CLI_OK;
    case CLI_OPT_CHOICE: {
        size_t n = strlen(arg);
        for (const char *w = o->meta; *w;) {
            size_t k = strcspn(w, "|");
            if (k == n && !strncmp(w, arg, n)) {
                *(const char **)o->dest = arg;
                return CLI_OK;
            }
            w += k + (w[k] == '|');
        }
        char words[128];
        snprintf(words, sizeof words, "%s", o->meta);
        for (char *p = words; (p = strchr(p, '|'));)
            *p = ',';
        return cli_usage_error(hint, "--%s must be one of %s", o->name, words);
    }
    case CLI_OPT_FLAG: *(int *)o->dest = 1; return CLI_OK;
    case CLI_OPT_SET: *(int *)o->dest = (int)o->min; return CLI_OK;
    case CLI_OPT_LIST: {
        cli_list *l = o->dest;
        if (l->n == CLI_LIST_MAX)
            return cli_usage_error(hint, "at most %d --%s", CLI_LIST_MAX, o->name);
        l->v[l->n++] = arg;
        return CLI_OK;
    }
    case CLI_OPT_LONG:
    case CLI_OPT_INT: {
        long v = strtol(arg, &end, 10);
        if (end == arg || *end || errno || v < o->min || v > o->max) {
            if (o->max == LONG_MAX)
                return cli_usage_error(hint, "--%s takes a whole number of at least %ld", o->name, o->min);
            return cli_usage_error(hint, "--%s takes a whole number in %ld..%ld", o->name, o->min, o->max);
        }
        if (o->type == CLI_OPT_INT)
            *(int *)o->dest = (int)v;
        else
            *(long *)o->dest = v;
        return CLI_OK;
    }
    case CLI_OPT_U64: {
        unsigned long long v = strtoull(arg, &end, 10);
        if (end == arg || *end || errno || arg[0] == '-')
            return cli_usage_error(hint, "--%s takes a whole number", o->name);
        *(uint64_t *)o->dest = (uint64_t)v;
        return CLI_OK;
    }
    case CLI_OPT_DOUBLE: {
        double v = strtod(arg, &end);
        if (end == arg || *end || !isfinite(v) || v < (double)o->min || v > (double)o->max)
            return cli_usage_error(hint, "--%s takes a number in %ld..%ld", o->name, o->min, o->max);
        *(double *)o->dest = v;
        return CLI_OK;
    }
    case CLI_OPT_TIME: {
        long long v = strtoll(arg, &end, 10);
        if (end == arg || *end || errno || v <= 0)
            return cli_usage_error(hint, "--%s takes a Unix time (seconds since 1970)", o->name);
        *(int64_t *)o->dest = (int64_t)v;
        return CLI_OK;
    }
    case CLI_OPT_HEX32: {
        cli_hex32 *h = o->dest;
        size_t n = strlen(arg);
        if (n != 64 || veil_hex_decode(h->bytes, 32, NULL, arg, n, NULL) != VEIL_OK)
            return cli_usage_error(hint, "--%s takes 32 bytes as 64 hex characters", o->name);
        h->set = 1;
        return CLI_OK;
    }
    }
    return cli_usage_error(hint, "--%s: unknown option type", o->name);
}

int cli_parse(const cli_spec *spec, int argc, char **argv, int *pos) {
    char hint[80];
    snprintf(hint, sizeof hint, "%s --help", spec->cmd);
    struct option *lo = calloc(spec->n_opts + 2, sizeof *lo);
    if (!lo)
        return cli_fail("out of memory");
    for (size_t i = 0; i < spec->n_opts; i++) {
        const cli_opt *o = &spec->opts[i];
        int takes = o->type != CLI_OPT_FLAG && o->type != CLI_OPT_SET;
        lo[i] = (struct option){o->name, takes ? required_argument : no_argument, NULL, 256 + (int)i};
    }
    lo[spec->n_opts] = (struct option){"help", no_argument, NULL, 'h'};
    char shorts[64] = ":h";
    size_t ns = 2;
    for (size_t i = 0; i < spec->n_opts && ns + 3 < sizeof shorts; i++)
        if (spec->opts[i].short_name) {
            shorts[ns++] = spec->opts[i].short_name;
            if (lo[i].has_arg == required_argument)
                shorts[ns++] = ':';
        }
    shorts[ns] = '\0';
    int rc = CLI_OK, c;
    opterr = 0;
    optind = 0; /* glibc: start over, whatever an earlier parse left */
    while (rc == CLI_OK && (c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        if (c == 'h') {
            cli_print_help(spec);
            rc = CLI_HELP;
        } else if (c > 0 && c < 256 && c != '?' && c != ':') { /* a one-letter alias */
            size_t i = 0;
            while (i < spec->n_opts && spec->opts[i].short_name != c)
                i++;
            rc = i < spec->n_opts ? store(spec, &spec->opts[i], optarg)
                                  : cli_usage_error(hint, "bad option '%s' for '%s'", argv[optind - 1], spec->cmd);
        } else if (c == ':') {
            rc = cli_usage_error(hint, "option '%s' needs a value", argv[optind - 1]);
        } else if (c < 256 || c >= 256 + (int)spec->n_opts) {
            rc = cli_usage_error(hint, "bad option '%s' for '%s'", argv[optind - 1], spec->cmd);
        } else {
            rc = store(spec, &spec->opts[c - 256], optarg);
        }
    }
    free(lo);
    *pos = optind;
    return rc;
}
