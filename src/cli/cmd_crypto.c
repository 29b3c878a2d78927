/* veil crypto: the protocol's primitives by hand, for debugging an E2EE
 * integration: keys, envelopes, Keccak-256, addresses and EIP-191 signatures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "veil/ecies.h"
#include "veil/eth.h"
#include "veil/hex.h"
#include "veil/keccak.h"
#include "veil/keys.h"
#include "veil/secure.h"

/* Envelopes carry chat messages; 64 MiB on stdin is far above any request. */
#define STDIN_LIMIT ((size_t)64 << 20)

static void help(void) {
    puts("Usage: veil crypto <command> [options]\n"
         "\n"
         "Commands:\n"
         "  keygen                          new secp256k1 key: private key, public key, address\n"
         "  pubkey PRIVHEX                  public key (130 hex, 04-prefixed) of a private key\n"
         "  address PUBHEX                  EIP-55 address of a public key (128 or 130 hex)\n"
         "  encrypt --to PUBHEX             seal stdin to a public key; prints the hex envelope\n"
         "  decrypt --key PRIVHEX           open a hex envelope from stdin; writes the plaintext\n"
         "  sign --key PRIVHEX TEXT         EIP-191 personal_sign of TEXT; prints 0x r||s||v\n"
         "  recover --signature SIG TEXT    address that signed TEXT (EIP-191)\n"
         "  keccak [TEXT]                   Keccak-256 of TEXT (or of stdin) in hex\n"
         "\n"
         "TEXT '-' reads the text from stdin, byte for byte. Exit status: 0 success,\n"
         "1 bad input (one line on stderr says what is wrong), 2 usage error.");
}

/* Parses the options of one subcommand: `--key`/`--to`/`--signature` into
 * *value (required when opt_name is set); positional arguments from *pos. */
static int parse_one_option(int argc, char **argv, const char *opt_name, const char **value, const char *usage,
                            int *pos) {
    const cli_opt opts[] = {OPT_STR(opt_name ? opt_name : "", value, "HEX", "required")};
    const cli_spec spec = {"veil crypto", usage, NULL, opts, opt_name ? 1 : 0};
    int rc = cli_parse(&spec, argc, argv, pos);
    if (rc != CLI_OK)
        return rc;
    if (opt_name && !*value)
        return cli_usage_error("veil crypto --help", "'veil crypto %s' needs --%s", argv[0], opt_name);
    return CLI_OK;
}

/* TEXT arguments: "-" means stdin. The caller frees *owned with veil_free_secret. */
static const char *text_arg(const char *arg, size_t *len, uint8_t **owned) {
    *owned = NULL;
    if (strcmp(arg, "-") != 0) {
        *len = strlen(arg);
        return arg;
    }
    *owned = cli_read_stdin(STDIN_LIMIT, len);
    return (const char *)*owned;
}

static int cmd_keygen(int argc, char **argv) {
    const char *unused = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, NULL, &unused, "veil crypto keygen", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil crypto --help", "'veil crypto keygen' takes no arguments");
    veil_err err;
    veil_seckey sec;
    veil_pubkey pub;
    if (veil_seckey_generate(&sec, &err) != VEIL_OK || veil_pubkey_from_seckey(&pub, &sec, &err) != VEIL_OK)
        return cli_fail_err("keygen", &err);
    char sec_hex[65], pub_hex[VEIL_PUBKEY_HEX_LEN + 1], addr_str[VEIL_ADDRESS_STR_LEN + 1];
    uint8_t addr[VEIL_ADDRESS_LEN];
    veil_hex_encode(sec_hex, sec.bytes, sizeof sec.bytes);
    veil_pubkey_to_hex(pub_hex, &pub);
    veil_eth_address(addr, &pub);
    veil_eth_address_to_string(addr_str, addr);
    printf("private_key: %s\npublic_key: %s\naddress: %s\n", sec_hex, pub_hex, addr_str);
    veil_wipe(sec_hex, sizeof sec_hex);
    veil_seckey_wipe(&sec);
    return CLI_OK;
}

static int cmd_pubkey(int argc, char **argv) {
    const char *unused = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, NULL, &unused, "veil crypto pubkey PRIVHEX", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc - 1)
        return cli_usage_error("veil crypto --help", "'veil crypto pubkey' takes one private key");
    veil_err err;
    veil_seckey sec;
    veil_pubkey pub;
    if (veil_seckey_from_hex(&sec, argv[pos], strlen(argv[pos]), &err) != VEIL_OK)
        return cli_fail_err("private key", &err);
    rc = veil_pubkey_from_seckey(&pub, &sec, &err) == VEIL_OK ? CLI_OK : cli_fail_err("pubkey", &err);
    veil_seckey_wipe(&sec);
    if (rc == CLI_OK) {
        char hex[VEIL_PUBKEY_HEX_LEN + 1];
        veil_pubkey_to_hex(hex, &pub);
        puts(hex);
    }
    return rc;
}

static int cmd_address(int argc, char **argv) {
    const char *unused = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, NULL, &unused, "veil crypto address PUBHEX", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc - 1)
        return cli_usage_error("veil crypto --help", "'veil crypto address' takes one public key");
    veil_err err;
    veil_pubkey pub;
    if (veil_pubkey_parse_hex(&pub, argv[pos], strlen(argv[pos]), &err) != VEIL_OK)
        return cli_fail_err("public key", &err);
    uint8_t addr[VEIL_ADDRESS_LEN];
    char s[VEIL_ADDRESS_STR_LEN + 1];
    veil_eth_address(addr, &pub);
    veil_eth_address_to_string(s, addr);
    puts(s);
    return CLI_OK;
}

static int cmd_encrypt(int argc, char **argv) {
    const char *to = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, "to", &to, "veil crypto encrypt --to PUBHEX < plaintext", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil crypto --help", "'veil crypto encrypt' reads the plaintext from stdin");
    veil_err err;
    veil_pubkey pub;
    if (veil_pubkey_parse_hex(&pub, to, strlen(to), &err) != VEIL_OK)
        return cli_fail_err("recipient public key", &err);
    size_t n;
    uint8_t *pt = cli_read_stdin(STDIN_LIMIT, &n);
    if (!pt)
        return CLI_FAIL;
    char *hex = NULL;
    rc = veil_ecies_seal_hex(&hex, &pub, pt, n, &err) == VEIL_OK ? CLI_OK : cli_fail_err("encrypt", &err);
    veil_free_secret(pt, n + 1);
    if (hex)
        puts(hex);
    free(hex);
    return rc;
}

static int cmd_decrypt(int argc, char **argv) {
    const char *key = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, "key", &key, "veil crypto decrypt --key PRIVHEX < envelope", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc)
        return cli_usage_error("veil crypto --help", "'veil crypto decrypt' reads the envelope from stdin");
    veil_err err;
    veil_seckey sec;
    if (veil_seckey_from_hex(&sec, key, strlen(key), &err) != VEIL_OK)
        return cli_fail_err("private key", &err);
    size_t n;
    uint8_t *in = cli_read_stdin(STDIN_LIMIT, &n);
    if (!in) {
        veil_seckey_wipe(&sec);
        return CLI_FAIL;
    }
    size_t hex_len = n;
    const char *hex = cli_trim((const char *)in, &hex_len);
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    rc = veil_ecies_open_hex(&pt, &pt_len, &sec, hex, hex_len, &err) == VEIL_OK
             ? CLI_OK
             : cli_fail("decrypt: %s (%s)", err.message, veil_rc_code(err.code));
    veil_seckey_wipe(&sec);
    free(in);
    if (rc == CLI_OK && fwrite(pt, 1, pt_len, stdout) != pt_len)
        rc = cli_fail("could not write the plaintext");
    veil_free_secret(pt, pt_len + 1);
    return rc;
}

static int cmd_sign(int argc, char **argv) {
    const char *key = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, "key", &key, "veil crypto sign --key PRIVHEX TEXT", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc - 1)
        return cli_usage_error("veil crypto --help", "'veil crypto sign' takes one TEXT");
    veil_err err;
    veil_seckey sec;
    if (veil_seckey_from_hex(&sec, key, strlen(key), &err) != VEIL_OK)
        return cli_fail_err("private key", &err);
    size_t n;
    uint8_t *owned;
    const char *text = text_arg(argv[pos], &n, &owned);
    uint8_t sig[VEIL_SIGNATURE_LEN];
    if (!text)
        rc = CLI_FAIL;
    else if (veil_eip191_sign(sig, &sec, text, n, &err) != VEIL_OK)
        rc = cli_fail_err("sign", &err);
    veil_seckey_wipe(&sec);
    if (owned)
        veil_free_secret(owned, n + 1);
    if (rc == CLI_OK) {
        char s[VEIL_SIGNATURE_STR_LEN + 1];
        veil_signature_to_string(s, sig);
        puts(s);
    }
    return rc;
}

static int cmd_recover(int argc, char **argv) {
    const char *sig = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, "signature", &sig, "veil crypto recover --signature SIG TEXT", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (pos != argc - 1)
        return cli_usage_error("veil crypto --help", "'veil crypto recover' takes one TEXT");
    size_t n;
    uint8_t *owned;
    const char *text = text_arg(argv[pos], &n, &owned);
    if (!text)
        return CLI_FAIL;
    veil_err err;
    uint8_t addr[VEIL_ADDRESS_LEN];
    rc = veil_eip191_recover_address(addr, text, n, sig, strlen(sig), &err) == VEIL_OK
             ? CLI_OK
             : cli_fail_err("signature", &err);
    if (owned)
        veil_free_secret(owned, n + 1);
    if (rc == CLI_OK) {
        char s[VEIL_ADDRESS_STR_LEN + 1];
        veil_eth_address_to_string(s, addr);
        puts(s);
    }
    return rc;
}

static int cmd_keccak(int argc, char **argv) {
    const char *unused = NULL;
    int pos;
    int rc = parse_one_option(argc, argv, NULL, &unused, "veil crypto keccak [TEXT]", &pos);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (argc - pos > 1)
        return cli_usage_error("veil crypto --help", "'veil crypto keccak' takes at most one TEXT");
    size_t n;
    uint8_t *owned;
    const char *text = text_arg(pos < argc ? argv[pos] : "-", &n, &owned);
    if (!text)
        return CLI_FAIL;
    uint8_t h[32];
    char hex[65];
    veil_keccak256(h, text, n);
    free(owned);
    veil_hex_encode(hex, h, sizeof h);
    puts(hex);
    return CLI_OK;
}

static const cli_command commands[] = {
    {"keygen", "", cmd_keygen},   {"pubkey", "", cmd_pubkey},   {"address", "", cmd_address},
    {"encrypt", "", cmd_encrypt}, {"decrypt", "", cmd_decrypt}, {"sign", "", cmd_sign},
    {"recover", "", cmd_recover}, {"keccak", "", cmd_keccak},
};

int cmd_crypto(int argc, char **argv) {
    return cli_dispatch("veil crypto", commands, sizeof commands / sizeof commands[0], argc, argv, help);
}
