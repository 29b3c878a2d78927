/* Unit tests for chat completion request validation: malformed bodies of
 * every kind get the exact message and status protocol.md §3.2 gives. */
#include "testutil.h"

#include "server/server.h"

static veil_model models[2];

static const veil_model *find(void *ctx, const char *id) {
    (void)ctx;
    for (int i = 0; i < 2; i++)
        if (!strcmp(models[i].id, id))
            return &models[i];
    return NULL;
}

static int setup(void **state) {
    (void)state;
    models[0] = (veil_model){.id = "plain", .system_prompt = "SYS"};
    models[1] = (veil_model){.id = "tools", .function_calling = 1, .response_schema = 1, .logprobs = 1};
    return 0;
}

static void expect(const char *body, int status, const char *message) {
    veil_chat_request r;
    veil_http_error e;
    int ok = veil_chat_validate(body, strlen(body), find, NULL, NULL, NULL, &r, &e);
    if (status == 200) {
        if (!ok)
            fail_msg("%s: refused: %s", body, e.message);
        veil_chat_request_clear(&r);
        return;
    }
    if (ok)
        fail_msg("%s: accepted", body);
    assert_int_equal(e.status, status);
    if (strcmp(e.message, message) != 0)
        fail_msg("%s: message '%s', want '%s'", body, e.message, message);
}

#define M "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void malformed_bodies(void **state) {
    (void)state;
    expect("", 400, "Invalid JSON body");
    expect("[]", 400, "Invalid JSON body");
    expect("{\"model\":\"plain\"," M, 400, "Invalid JSON body");
    expect("{\"model\":\"plain\",\"model\":\"plain\"," M "}", 400, "Invalid JSON body");
    expect("\xff\xfe", 400, "Invalid JSON body");
    expect("{\"model\":\"plain\"," M ",\"bogus\":1}", 400, "Unrecognized request parameter: bogus");
    expect("{\"model\":7," M "}", 400, "model must be a string");
    expect("{\"model\":\"nope\"," M "}", 404, "Model not found");
    expect("{\"model\":\"plain\"}", 400, "messages must be a non-empty array");
    expect("{\"model\":\"plain\",\"messages\":{}}", 400, "messages must be a non-empty array");
    expect("{\"model\":\"plain\",\"messages\":[1]}", 400, "messages[0] must be an object");
    expect("{\"model\":\"plain\",\"messages\":[{\"content\":\"x\"}]}", 400,
           "messages[0].role must be one of system, developer, user, assistant, tool");
    expect("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
           "messages[0].content must be a string or an array of content parts");
    expect("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}", 400,
           "messages[0].content[0] must be an object with a type");
    expect("{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400,
           "messages[0].content[0].text must be a string");
    expect("{\"model\":\"plain\"," M ",\"temperature\":-0.1}", 400, "temperature must be a number between 0 and 2");
    expect("{\"model\":\"plain\"," M ",\"temperature\":\"hot\"}", 400, "temperature must be a number between 0 and 2");
    expect("{\"model\":\"plain\"," M ",\"max_tokens\":0}", 400, "max_tokens must be an integer between 1 and 1e+09");
    expect("{\"model\":\"plain\"," M ",\"max_tokens\":1.5}", 400, "max_tokens must be an integer between 1 and 1e+09");
    expect("{\"model\":\"plain\"," M ",\"top_p\":2}", 400, "top_p must be a number between 0 and 1");
    expect("{\"model\":\"plain\"," M ",\"stream\":\"yes\"}", 400, "stream must be a boolean");
    expect("{\"model\":\"plain\"," M ",\"n\":3}", 400, "n must be 1");
    expect("{\"model\":\"plain\"," M ",\"stop\":[1]}", 400, "stop must be a string or an array of at most 4 strings");
    expect("{\"model\":\"plain\"," M ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400,
           "stop must be a string or an array of at most 4 strings");
    expect("{\"model\":\"plain\"," M ",\"stream_options\":{\"include_usage\":1}}", 400,
           "stream_options must be an object with a boolean include_usage");
    expect("{\"model\":\"plain\"," M ",\"venice_parameters\":[]}", 400, "venice_parameters must be an object");
    expect("{\"model\":\"plain\"," M ",\"user\":5}", 400, "user must be a string");
    expect("{\"model\":\"plain\"," M ",\"tools\":[]}", 400, "tools is not supported by this model");
    expect("{\"model\":\"plain\"," M ",\"function_call\":\"auto\"}", 400, "function_call is not supported by this model");
    expect("{\"model\":\"plain\"," M ",\"response_format\":{}}", 400, "response_format is not supported by this model");
    expect("{\"model\":\"plain\"," M ",\"top_logprobs\":2}", 400, "top_logprobs is not supported by this model");
    expect("{\"model\":\"plain\"," M ",\"venice_parameters\":{\"enable_web_search\":\"on\"}}", 400,
           "Web search is not supported");
}

static void accepted_bodies(void **state) {
    (void)state;
    expect("{\"model\":\"plain\"," M "}", 200, NULL);
    expect("{\"model\":\"tools\"," M ",\"tools\":[],\"tool_choice\":\"auto\",\"logprobs\":true,\"top_logprobs\":3,"
           "\"response_format\":{\"type\":\"json_object\"}}", 200, NULL);
    expect("{\"model\":\"plain\",\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"assistant\","
           "\"content\":null,\"tool_calls\":[]},{\"role\":\"tool\",\"content\":\"r\"},{\"role\":\"user\",\"content\":"
           "[{\"type\":\"text\",\"text\":\"x\"}]}],\"stop\":\"\\n\",\"seed\":-5,\"temperature\":0,\"top_k\":40,"
           "\"min_p\":0.1,\"repetition_penalty\":1.1,\"presence_penalty\":-2,\"frequency_penalty\":2,\"n\":1,"
           "\"user\":\"u\",\"metadata\":{},\"store\":false,\"stream\":false,\"max_completion_tokens\":5,"
           "\"venice_parameters\":{\"enable_web_search\":\"auto\",\"unknown_inner\":1}}",
           200, NULL);
    /* the server's system prompt, and its opt-out */
    veil_chat_request r;
    veil_http_error e;
    const char *b = "{\"model\":\"plain\"," M ",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":9}";
    assert_true(veil_chat_validate(b, strlen(b), find, NULL, NULL, NULL, &r, &e));
    assert_int_equal(json_array_size(r.messages), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r.messages, 0), "content")), "SYS");
    assert_true(r.stream && r.include_usage);
    assert_int_equal(r.max_tokens, 9);
    veil_chat_request_clear(&r);
    b = "{\"model\":\"plain\"," M ",\"venice_parameters\":{\"include_venice_system_prompt\":false}}";
    assert_true(veil_chat_validate(b, strlen(b), find, NULL, NULL, NULL, &r, &e));
    assert_int_equal(json_array_size(r.messages), 1);
    veil_chat_request_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_bodies),
        cmocka_unit_test(accepted_bodies),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
