/* One HTTP exchange by libcurl for the places that ask a service for a small
 * JSON document and have no client of their own: the dstack guest agent
 * (over its unix socket) and a replica's key release. */
#include <curl/curl.h>

#include "base.h"

veil_rc veil_http_exchange(const char *url, const char *unix_socket, const char *json_body, long timeout_s,
                           int verify_tls, veil_buf *resp, long *status, veil_err *err) {
    *status = 0;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURLcode cc = CURLE_FAILED_INIT;
    if (curl && headers) {
        if (unix_socket)
            curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, unix_socket);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        if (json_body)
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_body);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, veil_buf_curl_write);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        if (!verify_tls) {
            curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        cc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return cc == CURLE_OK ? VEIL_OK : veil_err_set(err, VEIL_ERR_IO, "%s", curl_easy_strerror(cc));
}
