/* libFuzzer target for chat completion request validation, the first parser
 * every HTTP body meets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static const veil_model models[2] = {
    {.id = "plain", .system_prompt = "SYS"},
    {.id = "tools", .function_calling = 1, .response_schema = 1, .logprobs = 1},
};

static const veil_model *find(void *ctx, const char *id) {
    (void)ctx;
    for (int i = 0; i < 2; i++)
        if (!strcmp(models[i].id, id))
            return &models[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    veil_chat_request r;
    veil_http_error e;
    if (veil_chat_validate((const char *)data, size, find, NULL, NULL, NULL, &r, &e)) {
        if (!r.model || !json_is_array(r.messages) || json_array_size(r.messages) == 0)
            abort();
        veil_chat_request_clear(&r);
    } else if (e.status != 400 && e.status != 404) {
        abort();
    }
    return 0;
}
