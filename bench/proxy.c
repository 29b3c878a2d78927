/* bench/proxy.c: what veil proxy costs a tool, against the direct client in
 * the same run (bench/proxy.sh starts the servers). Alternating rounds of:
 *   direct: libveil's client as `veil chat --e2ee --verify-signature` uses
 *           it (one attestation up front, a kept-alive connection; every
 *           request sealed, every chunk decrypted, the signature checked);
 *   proxy:  a plain OpenAI streaming request to veil proxy over a kept-alive
 *           connection (the proxy does the same work upstream).
 * Reports time to first token (first non-empty content) p50/p90 both ways,
 * the proxy's added p50, and tokens/s (median) with the ratio. With --tls it
 * also times the TLS handshake (a fresh connection per GET /models against
 * a kept one) on the server's https port.
 * Usage: build/bench/proxy --direct URL --proxy URL --model ID [--tokens N]
 *        [--rounds R] [--requests K] [--tls-attested] [--tls URL] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/base.h"
#include "client/client_internal.h"
#include "veil/buf.h"

typedef struct timing {
    double t0, first;
    long tokens;
} timing;

static void on_text(void *ctx, const char *text, size_t n) {
    (void)text;
    timing *t = ctx;
    if (n && !t->first)
        t->first = veil_now_s();
    t->tokens++;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* the tool's side: SSE bytes as they come; the first non-empty content marks the first token */
typedef struct tool_read {
    timing *t;
    veil_buf line;
    int done;
} tool_read;

static void tool_line(tool_read *r, const char *l, size_t n) {
    if (n <= 6 || memcmp(l, "data: ", 6) != 0)
        return;
    if (n >= 12 && !memcmp(l + 6, "[DONE]", 6))
        r->done = 1;
    else if (memmem(l, n, "\"content\":\"", 11) && !memmem(l, n, "\"content\":\"\"", 12)) {
        if (!r->t->first)
            r->t->first = veil_now_s();
        r->t->tokens++;
    }
}

static size_t on_sse(char *p, size_t size, size_t nmemb, void *arg) {
    tool_read *r = arg;
    size_t n = size * nmemb, at = 0;
    while (at < n) {
        const char *nl = memchr(p + at, '\n', n - at);
        size_t k = nl ? (size_t)(nl - (p + at)) : n - at;
        if (!nl) {
            veil_buf_append(&r->line, p + at, k);
            break;
        }
        if (r->line.len) {
            veil_buf_append(&r->line, p + at, k);
            tool_line(r, r->line.data, r->line.len);
            r->line.len = 0;
        } else {
            tool_line(r, p + at, k);
        }
        at += k + 1;
    }
    return n;
}

static size_t sink(char *p, size_t size, size_t nmemb, void *arg) {
    (void)p, (void)arg;
    return size * nmemb;
}

int main(int argc, char **argv) {
    const char *direct = NULL, *proxy = NULL, *model = NULL, *tls = NULL;
    long tokens = 200, rounds = 5, requests = 20;
    int tls_attested = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tls-attested")) {
            tls_attested = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--direct"))
            direct = v;
        else if (!strcmp(a, "--proxy"))
            proxy = v;
        else if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--tls"))
            tls = v;
        else if (!strcmp(a, "--tokens"))
            tokens = atol(v);
        else if (!strcmp(a, "--rounds"))
            rounds = atol(v);
        else if (!strcmp(a, "--requests"))
            requests = atol(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!direct || !proxy || !model || tokens < 1 || rounds < 1 || requests < 1) {
        fprintf(stderr,
                "usage: %s --direct URL --proxy URL --model ID [--tokens N] [--rounds R] [--requests K] "
                "[--tls-attested] [--tls URL]\n",
                argv[0]);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    veil_client *c;
    veil_err err;
    if (veil_client_new(&c, direct, "bench", 60, &err) != VEIL_OK)
        return 1;
    if (tls_attested)
        veil_client_set_tls_trust(c, VEIL_TLS_ATTESTED);
    veil_attestation att;
    veil_attest_options ao = {.model = model, .allow_simulated = 1};
    if (veil_client_attest(c, &att, &ao, &err) != VEIL_OK || !att.accepted) {
        fprintf(stderr, "bench: the attestation failed\n");
        return 1;
    }
    char prompt[64];
    snprintf(prompt, sizeof prompt, "FAST %ld", tokens);
    json_t *req = json_pack("{s:s, s:I, s:[{s:s, s:s}]}", "model", model, "max_tokens", (json_int_t)tokens, "messages",
                            "role", "user", "content", prompt);
    json_t *tool_req = json_deep_copy(req);
    json_object_set_new(tool_req, "stream", json_true());
    char *tool_body = json_dumps(tool_req, JSON_COMPACT);
    char url[1024];
    snprintf(url, sizeof url, "%s/chat/completions", proxy);
    CURL *dh = curl_easy_init(), *ph = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    size_t total = (size_t)(rounds * requests);
    double *ttft_d = calloc(total, sizeof(double)), *ttft_p = calloc(total, sizeof(double));
    double *rate_d = calloc((size_t)rounds, sizeof(double)), *rate_p = calloc((size_t)rounds, sizeof(double));
    size_t k = 0;
    for (long r = 0; r < rounds; r++) {
        double td = 0, tp = 0;
        long nd = 0, np = 0;
        for (long q = 0; q < requests; q++, k++) {
            /* direct */
            timing t = {veil_now_s(), 0, 0};
            veil_chat_stream so;
            memset(&so, 0, sizeof so);
            so.att = &att;
            so.e2ee = 1;
            so.verify_signature = 1;
            so.on_text = on_text;
            so.ctx = &t;
            so.curl = dh;
            veil_chat_result res;
            if (veil_client_chat_stream(c, req, &so, &res, &err) != VEIL_OK) {
                fprintf(stderr, "bench: direct: %s\n", err.message);
                return 1;
            }
            veil_chat_result_clear(&res);
            double end = veil_now_s();
            ttft_d[k] = (t.first - t.t0) * 1000.0;
            td += end - t.t0;
            nd += t.tokens;
            /* through the proxy */
            timing u = {veil_now_s(), 0, 0};
            tool_read tr = {&u, {0}, 0};
            curl_easy_setopt(ph, CURLOPT_URL, url);
            curl_easy_setopt(ph, CURLOPT_HTTPHEADER, hd);
            curl_easy_setopt(ph, CURLOPT_POSTFIELDS, tool_body);
            curl_easy_setopt(ph, CURLOPT_WRITEFUNCTION, on_sse);
            curl_easy_setopt(ph, CURLOPT_WRITEDATA, &tr);
            CURLcode cc = curl_easy_perform(ph);
            long status = 0;
            curl_easy_getinfo(ph, CURLINFO_RESPONSE_CODE, &status);
            veil_buf_free(&tr.line);
            if (cc != CURLE_OK || status != 200 || !tr.done) {
                fprintf(stderr, "bench: proxy: %s, HTTP %ld, %s\n", curl_easy_strerror(cc), status,
                        tr.done ? "[DONE]" : "no [DONE]");
                return 1;
            }
            end = veil_now_s();
            ttft_p[k] = (u.first - u.t0) * 1000.0;
            tp += end - u.t0;
            np += u.tokens;
        }
        rate_d[r] = (double)nd / td;
        rate_p[r] = (double)np / tp;
    }
    double d50 = pct(ttft_d, total, 0.5), d90 = pct(ttft_d, total, 0.9);
    double p50 = pct(ttft_p, total, 0.5), p90 = pct(ttft_p, total, 0.9);
    double rd = pct(rate_d, (size_t)rounds, 0.5), rp = pct(rate_p, (size_t)rounds, 0.5);
    printf("veil proxy vs direct E2EE client: %ld rounds x %ld requests x %ld tokens, alternating\n", rounds, requests,
           tokens);
    printf("%-28s p50 %8.3f ms   p90 %8.3f ms\n", "TTFT direct", d50, d90);
    printf("%-28s p50 %8.3f ms   p90 %8.3f ms\n", "TTFT through the proxy", p50, p90);
    printf("added TTFT p50 = %.3f ms (target < 1 ms): %s\n", p50 - d50, p50 - d50 < 1.0 ? "met" : "NOT met");
    printf("%-28s %10.0f tokens/s (median of rounds, whole requests)\n", "direct", rd);
    printf("%-28s %10.0f tokens/s\n", "through the proxy", rp);
    printf("proxy / direct = %.3f (target >= 0.9): %s\n", rp / rd, rp / rd >= 0.9 ? "met" : "NOT met");
    if (tls) { /* a fresh TLS connection per request against a kept one */
        double *fresh = calloc((size_t)requests, sizeof(double)), *kept = calloc((size_t)requests, sizeof(double));
        char murl[1024];
        snprintf(murl, sizeof murl, "%s/models", tls);
        CURL *kh = curl_easy_init();
        for (int pass = 0; pass < 2; pass++)
            for (long q = 0; q < requests; q++) {
                CURL *h = pass == 0 ? curl_easy_init() : kh;
                curl_easy_setopt(h, CURLOPT_URL, murl);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
                curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
                double t0 = veil_now_s();
                if (curl_easy_perform(h) != CURLE_OK) {
                    fprintf(stderr, "bench: GET %s failed\n", murl);
                    return 1;
                }
                (pass == 0 ? fresh : kept)[q] = (veil_now_s() - t0) * 1000.0;
                if (pass == 0)
                    curl_easy_cleanup(h);
            }
        double f = pct(fresh, (size_t)requests, 0.5), kk = pct(kept, (size_t)requests, 0.5);
        printf("TLS: GET /models p50 %.3f ms on a fresh connection, %.3f ms on a kept one: handshake ~%.3f ms\n", f, kk,
               f - kk);
        curl_easy_cleanup(kh);
        free(fresh);
        free(kept);
    }
    curl_easy_cleanup(dh);
    curl_easy_cleanup(ph);
    curl_slist_free_all(hd);
    free(tool_body);
    json_decref(req);
    json_decref(tool_req);
    free(ttft_d);
    free(ttft_p);
    free(rate_d);
    free(rate_p);
    veil_client_free(c);
    return 0;
}
