/* veil: the command-line entry point, dispatching to one file per command group. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef VEIL_VERSION
#define VEIL_VERSION "0.1.0"
#endif

static const cli_command commands[] = {
    {"serve", "the OpenAI/Venice-compatible inference server", cmd_serve},
    {"keys", "create, list and revoke the API keys veil serve accepts", cmd_keys},
    {"attest", "verify a server's TEE attestation here, trusting nothing it claims", cmd_attest},
    {"chat", "chat with a model: E2EE, TEE-only or plain, with signature checks", cmd_chat},
    {"proxy", "a local OpenAI endpoint that makes every TEE request E2EE and verified", cmd_proxy},
    {"models", "list a server's models and their TEE/E2EE capabilities", cmd_models},
    {"signature", "verify a response signature (fetched by request id, or offline)", cmd_signature},
    {"crypto", "keys, E2EE envelopes, Keccak and EIP-191 signatures by hand", cmd_crypto},
    {"quote", "show and verify Intel TDX/SGX DCAP quotes", cmd_quote},
    {"model", "synthesize, inspect and run GGUF models with the built-in engine", cmd_model},
    {"bench", "benchmarks of the built-in engine", cmd_bench},
    {"gpu", "verify NVIDIA GPU evidence here; produce it with NVML or the simulator", cmd_gpu},
    {"tee", "quote providers: a fresh quote, the simulator's root and collateral", cmd_tee},
};

static void help(void) {
    printf("veil %s: private LLM inference with TEE attestation and end-to-end encryption\n\n"
           "Usage: veil <command> [options]\n\nCommands:\n",
           VEIL_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("  %-10s %s\n", "help", "show this help");
    printf("  %-10s %s\n", "version", "print the version");
    printf("\nRun 'veil <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    cli_set_program(argv[0]);
    if (argc >= 2 && (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version"))) {
        printf("veil %s\n", VEIL_VERSION);
        return CLI_OK;
    }
    return cli_dispatch("veil", commands, sizeof commands / sizeof commands[0], argc, argv, help);
}
