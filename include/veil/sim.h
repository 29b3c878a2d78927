/* A simulated Intel TDX platform for machines without TDX (laptops, CI): its
 * own P-256 CA hierarchy ("veil simulated SGX Root CA", never Intel's name),
 * a PCK certificate with the SGX extensions, a quoting enclave report, a
 * per-process attestation key, and matching collateral, so that every
 * verifier path runs offline against the simulation root. */
#ifndef VEIL_SIM_H
#define VEIL_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "veil/err.h"

#ifdef __cplusplus
extern "C" {
#endif
VEIL_API_BEGIN

struct veil_event_log;

typedef struct veil_sim veil_sim;

/* SHA-384 of the running executable (/proc/self/exe): the simulated MRTD,
 * and the binary_sha384 attestation responses report. Returns 1 on success. */
int veil_binary_sha384(uint8_t out[48]);

typedef struct veil_sim_options {
    int debug;           /* set TDATTRIBUTES.DEBUG (for tests of debug refusal) */
    const uint8_t *mrtd; /* 48 bytes; NULL: SHA-384 of the running executable */
} veil_sim_options;

/* Opens the simulated platform whose CA keys and certificates live in
 * state_dir/sim-tdx (created 0700 with 0600 keys on first use, reused
 * afterwards so that the root is stable across restarts). opts may be NULL.
 * A fresh attestation key is made for each veil_sim.
 * Returns VEIL_OK, VEIL_ERR_IO or VEIL_ERR_CRYPTO. */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sim_open(veil_sim **out, const char *state_dir, const veil_sim_options *opts,
                                              veil_err *err) VEIL_NONNULL(1);

void veil_sim_free(veil_sim *sim);

/* The simulation root certificate as PEM (malloc'd; free()). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sim_root_pem(const veil_sim *sim, char **pem, veil_err *err) VEIL_NONNULL(1, 2);

/* The simulation root certificate as DER (malloc'd; free()). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sim_root_der(const veil_sim *sim, uint8_t **der, size_t *len, veil_err *err)
    VEIL_NONNULL(1, 2, 3);

/* A TDX v4 quote over report_data[64]. RTMR3 is the replay of `runtime`
 * (may be NULL: 48 zero bytes). *quote is malloc'd; free(). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sim_quote(veil_sim *sim, uint8_t **quote, size_t *quote_len,
                                               const uint8_t report_data[64], const struct veil_event_log *runtime,
                                               veil_err *err) VEIL_NONNULL(1, 2, 3, 4);

/* Collateral for the simulated platform in veil_collateral_parse's format,
 * issued at `now` and valid for 30 days: TCB info and QE identity signed by
 * the simulated TCB signing certificate, an empty root CA CRL, and a PCK CRL
 * that lists the PCK certificate when revoke_pck is set (for tests of
 * revocation). *json is malloc'd; free(). */
VEIL_WARN_UNUSED_RESULT veil_rc veil_sim_collateral(const veil_sim *sim, char **json, int64_t now, int revoke_pck,
                                                    veil_err *err) VEIL_NONNULL(1, 2);

VEIL_API_END
#ifdef __cplusplus
}
#endif
#endif
