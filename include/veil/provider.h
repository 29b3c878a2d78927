/* Quote providers: where veil serve gets a fresh TDX quote whose REPORTDATA
 * binds its signing key and a client's nonce. configfs-tsm on TDX guests
 * (Linux >= 6.7), the dstack guest agent in Phala dstack CVMs, or the
 * simulated platform of veil/sim.h everywhere else. */
#ifndef VEIL_PROVIDER_H
#define VEIL_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"
#include "veil/sim.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

typedef enum veil_tee_kind {
    VEIL_TEE_AUTO,   /* configfs-tsm if present, else the dstack socket if present, else simulated */
    VEIL_TEE_TDX,    /* configfs-tsm */
    VEIL_TEE_DSTACK, /* dstack guest agent */
    VEIL_TEE_SIM     /* simulated TDX */
} veil_tee_kind;

#define VEIL_CONFIGFS_TSM_REPORT "/sys/kernel/config/tsm/report"
#define VEIL_DSTACK_SOCKET "/var/run/dstack.sock"

typedef struct veil_provider_config {
    const char *configfs_path;   /* NULL: VEIL_CONFIGFS_TSM_REPORT */
    const char *dstack_socket;   /* NULL: VEIL_DSTACK_SOCKET */
    const char *state_dir;       /* for the simulator's CA hierarchy; required for VEIL_TEE_SIM and AUTO */
    const veil_sim_options *sim; /* may be NULL */
} veil_provider_config;

typedef struct veil_quote_provider veil_quote_provider;

/* Opens a provider of `kind` (AUTO resolves as documented above). The
 * provider is safe to use from several threads; requests are serialized.
 * Returns VEIL_OK, VEIL_ERR_IO (not available here) or another error. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_provider_open(veil_quote_provider **out, veil_tee_kind kind,
                                                   const veil_provider_config *cfg, veil_err *err) VEIL_NONNULL(1);

void veil_provider_free(veil_quote_provider *p);

/* The tee_provider name of docs/protocol.md §3.4: "intel-tdx", "dstack" or "veil-simulated". */
const char *veil_provider_name(const veil_quote_provider *p);

/* 1 for the simulated platform, else 0. */
int veil_provider_is_simulated(const veil_quote_provider *p);

/* The simulated platform behind the provider, or NULL for real ones. */
veil_sim *veil_provider_sim(veil_quote_provider *p);

/* Appends a runtime event (name, payload) to the provider's RTMR3 event log.
 * Supported by the simulator, where RTMR3 is the replay of this log; real
 * providers report VEIL_ERR_INVALID_ARG (their RTMR3 is the platform's). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_provider_add_event(veil_quote_provider *p, const char *name,
                                                        const uint8_t *payload, size_t len, veil_err *err);

/* Gets a quote over report_data[64]. *quote (malloc'd) holds the quote's
 * bytes; *event_log_json (malloc'd, or NULL when the provider has none) the
 * event log as a JSON array. The quote is parsed and its REPORTDATA checked
 * against report_data before it is returned. configfs-tsm requests whose
 * generation counter shows another writer are retried, then refused. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_provider_get_quote(veil_quote_provider *p, uint8_t **quote, size_t *quote_len,
                                                        char **event_log_json, const uint8_t report_data[64],
                                                        veil_err *err) VEIL_NONNULL(1, 2, 3, 5);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
