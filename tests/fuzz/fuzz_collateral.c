/* libFuzzer target for the attestation inputs that arrive as documents:
 * collateral JSON (with its embedded signed texts, chains and CRLs), policy
 * JSON and event logs (dstack JSON and binary CCEL). The first input byte
 * picks the parser, so one corpus serves all three. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/collateral.h"
#include "veil/eventlog.h"
#include "veil/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    veil_err err;
    switch (data[0] % 3) {
    case 0: {
        veil_collateral *c = NULL;
        if (veil_collateral_parse(&c, text, len, &err) == VEIL_OK) {
            if (!c)
                abort();
            veil_collateral_free(c);
        } else if (c) {
            abort();
        }
        break;
    }
    case 1: {
        veil_quote_policy p;
        if (veil_policy_parse(&p, text, len, &err) == VEIL_OK && p.n_accepted > VEIL_POLICY_MAX_STATUSES)
            abort();
        break;
    }
    default: {
        veil_event_log *log = NULL;
        if (veil_event_log_parse(&log, (const uint8_t *)text, len, &err) == VEIL_OK) {
            uint8_t rtmr[4][48];
            unsigned mask;
            veil_event_log_replay(log, rtmr, &mask);
            if (mask > 15)
                abort();
            char *json = veil_event_log_to_json(log);
            free(json);
            veil_event_log_free(log);
        }
        break;
    }
    }
    return 0;
}
