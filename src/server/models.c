/* Models as Venice's /models lists them (docs/protocol.md §3.1). */
#include "server.h"

json_t *veil_model_json(const veil_model *m, long created) {
    json_t *caps = json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:s}", "supportsE2EE", m->e2ee,
                             "supportsTeeAttestation", m->tee || m->e2ee, "supportsFunctionCalling", m->function_calling,
                             "supportsReasoning", m->reasoning, "supportsResponseSchema", m->response_schema,
                             "supportsVision", m->vision, "supportsWebSearch", 0, "supportsLogProbs", m->logprobs,
                             "optimizedForCode", 0, "quantization", "not-specified");
    json_t *pricing = json_pack("{s:{s:f, s:f}, s:{s:f, s:f}}", "input", "usd", m->price_in_usd, "diem",
                                m->price_in_usd, "output", "usd", m->price_out_usd, "diem", m->price_out_usd);
    json_t *spec = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:b, s:b, s:[], s:o, s:o}", "name", m->id, "description",
                             m->description ? m->description : "", "availableContextTokens", (json_int_t)m->context_length,
                             "maxCompletionTokens", (json_int_t)m->max_completion_tokens, "privacy", "private",
                             "modelSource", m->backend ? m->backend->name : "", "offline", 0, "beta", 0, "traits",
                             "capabilities", caps, "pricing", pricing);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:o}", "id", m->id, "object", "model", "created",
                     (json_int_t)created, "owned_by", "veil", "type", "text", "context_length",
                     (json_int_t)m->context_length, "model_spec", spec);
}
