/* Internal: TCB level evaluation against Intel's TCB info and QE identity. */
#ifndef VEIL_ATTEST_TCB_H
#define VEIL_ATTEST_TCB_H

#include <stdint.h>

#include <jansson.h>

#include "veil/quote.h"

/* Parses an Intel timestamp "YYYY-MM-DDTHH:MM:SS[.fff]Z" into *out. Returns 1 on success. */
int veil_tcb_parse_time(const char *s, int64_t *out);

/* Evaluates the platform (and for TDX the TDX module) TCB level from
 * `tcb_info`, and the QE's from `qe_identity`, converged as Intel's QVL
 * does; fills v->tcb_status and v->advisory_ids. Returns VEIL_QUOTE_OK or
 * the refusal code with v->message set. Assumes both documents' signatures
 * were checked. */
veil_quote_code veil_tcb_evaluate(json_t *tcb_info, json_t *qe_identity, const veil_quote *q,
                                  const veil_pck_info *pck, veil_quote_verdict *v);

#endif
