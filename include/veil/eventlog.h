/* TDX measurement event logs: dstack-style JSON logs (runtime events in
 * RTMR3, boot events with their digests) and binary CCEL TCG2 logs, replayed
 * into RTMR values to compare with a quote (docs/protocol.md §5). */
#ifndef VEIL_EVENTLOG_H
#define VEIL_EVENTLOG_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

/* The event type of dstack runtime events, whose digest is derived from
 * their name and payload. */
#define VEIL_EVENT_RUNTIME 0x08000001u

/* A list of events. Opaque; free with veil_event_log_free. */
typedef struct veil_event_log veil_event_log;

/* An empty log, to which veil_event_log_add_runtime appends. NULL when out of memory. */
veil_event_log *veil_event_log_new(void);

void veil_event_log_free(veil_event_log *log);

/* Appends a runtime event on IMR 3: digest = SHA-384(u32 LE event type ||
 * ":" || name || ":" || payload). name: a NUL-terminated string; payload
 * borrowed and copied. Returns VEIL_OK or VEIL_ERR_NOMEM. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_event_log_add_runtime(veil_event_log *log, const char *name,
                                                           const uint8_t *payload, size_t payload_len, veil_err *err)
    VEIL_NONNULL(1, 2);

/* Parses a log from data[0..len): a JSON array of {imr, event_type, digest,
 * event, event_payload} (or a JSON string holding one, as attestation
 * responses carry it), or else a binary CCEL TCG2 log (SHA-384 digests;
 * MR index 1..4 are RTMR0..3, 0xFF/zero padding ends it). Runtime events
 * whose stated digest disagrees with their name and payload are refused.
 * Returns VEIL_OK or VEIL_ERR_MALFORMED. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_event_log_parse(veil_event_log **out, const uint8_t *data, size_t len,
                                                     veil_err *err) VEIL_NONNULL(1);

/* Number of events in the log. */
size_t veil_event_log_count(const veil_event_log *log);

/* Replays the log: rtmr[i] starts at 48 zero bytes and becomes
 * SHA-384(rtmr[i] || digest) for each event on IMR i. *imr_mask (may be
 * NULL) gets bit i set when the log holds events for IMR i. */
void veil_event_log_replay(const veil_event_log *log, uint8_t rtmr[4][48], unsigned *imr_mask);

/* Serializes the log as the JSON array attestation responses carry;
 * returns a malloc'd string or NULL when out of memory. */
char *veil_event_log_to_json(const veil_event_log *log);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
