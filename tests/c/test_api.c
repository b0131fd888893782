/* The tokenward C API without an authorization server: building from options, every misuse
 * and its result code, verdicts decided without the AS (missing token, unreachable AS),
 * header stripping, logging and metrics. */
#include <stdint.h>

#include "tw_test.h"

struct log_sink {
  int count;
  int saw_warning;
  int saw_error;
};

static void on_log(void *userdata, const tokenward_log_params *params) {
  struct log_sink *sink = userdata;
  sink->count++;
  if (params->level == TOKENWARD_LOG_LEVEL_WARNING) sink->saw_warning = 1;
  if (params->level == TOKENWARD_LOG_LEVEL_ERROR) sink->saw_error = 1;
  /* The message is usable as a C string. */
  if (params->message.data[params->message.len] != '\0') sink->count = -1000;
}

/* An offline configuration: the endpoint refuses connections (port 1). */
static tokenward_config_builder *offline_builder(void) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  tw_set(b, "introspect_endpoint", "http://127.0.0.1:1/introspect");
  tw_set(b, "audience", "https://as.example");
  tw_set(b, "client_id", "rs");
  tw_set(b, "client_secret", "secret");
  tw_set(b, "mapping_project_id", "project.id");
  tw_set(b, "mapping_project_name", "project.name");
  tw_set(b, "mapping_project_domain_id", "project.domain.id");
  tw_set(b, "mapping_project_domain_name", "project.domain.name");
  tw_set(b, "mapping_user_domain_id", "user_domain.id");
  tw_set(b, "mapping_user_domain_name", "user_domain.name");
  tw_set(b, "mapping_roles", "roles");
  tw_set(b, "http_connect_timeout", "2");
  return b;
}

static void test_version(void) {
  tokenward_str v = tokenward_version();
  CHECK(tw_str_eq(v, TOKENWARD_VERSION));
  CHECK(TOKENWARD_VERSION_MAJOR == 0 && TOKENWARD_VERSION_MINOR == 1 && TOKENWARD_VERSION_PATCH == 0);
}

static void test_result_message(void) {
  char buf[64];
  char tiny[4];
  size_t n = 12345;
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_OK, buf, sizeof buf, &n), TOKENWARD_RESULT_OK);
  CHECK(n == strlen("success") && strcmp(buf, "success") == 0);
  n = 12345;
  memset(tiny, 'x', sizeof tiny);
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_NULL_PARAMETER, tiny, sizeof tiny, &n),
           TOKENWARD_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 12345 && tiny[0] == 'x'); /* nothing written on failure */
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_OK, NULL, 10, &n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_OK, buf, sizeof buf, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_result_message(999999, buf, sizeof buf, &n), TOKENWARD_RESULT_OK);
  CHECK(strcmp(buf, "unknown result code") == 0);
  CHECK(tokenward_result_is_denial(TOKENWARD_RESULT_DENY_INACTIVE));
  CHECK(tokenward_result_is_denial(TOKENWARD_RESULT_DENY_AS_UNAVAILABLE));
  CHECK(!tokenward_result_is_denial(TOKENWARD_RESULT_CONFIG_INVALID));
}

static void test_builder_misuse(void) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  const char bad_utf8[] = {(char)0xff, (char)0xfe, 0};
  char err[256];
  size_t err_n = 0;
  CHECK(b != NULL);
  CHECK_RC(tokenward_config_builder_set(NULL, "client_id", 9, "x", 1), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_config_builder_set(b, NULL, 0, "x", 1), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_config_builder_set(b, "client_id", 9, NULL, 1), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_config_builder_set(b, "client_id", 9, NULL, 0), TOKENWARD_RESULT_OK); /* unset */
  CHECK_RC(tw_set(b, "no_such_option", "1"), TOKENWARD_RESULT_UNKNOWN_OPTION);
  CHECK_RC(tw_set(b, "here", "/etc/app"), TOKENWARD_RESULT_OK); /* paste key, ignored */
  CHECK_RC(tokenward_config_builder_set(b, bad_utf8, 2, "x", 1), TOKENWARD_RESULT_INVALID_UTF8);
  CHECK_RC(tokenward_config_builder_set(b, "client_id", 9, bad_utf8, 2), TOKENWARD_RESULT_INVALID_UTF8);
  /* key_len is honoured: no NUL needed */
  CHECK_RC(tokenward_config_builder_set(b, "client_idXXX", 9, "rsXX", 2), TOKENWARD_RESULT_OK);
  CHECK_RC(tokenward_config_builder_set_log_callback(NULL, on_log, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_config_builder_set_log_level(b, 0), TOKENWARD_RESULT_INVALID_ARGUMENT);
  CHECK_RC(tokenward_config_builder_set_log_level(b, 99), TOKENWARD_RESULT_INVALID_ARGUMENT);
  CHECK_RC(tokenward_config_builder_set_log_level(NULL, TOKENWARD_LOG_LEVEL_INFO), TOKENWARD_RESULT_NULL_PARAMETER);
  tokenward_config_builder_free(b);
  tokenward_config_builder_free(NULL);

  /* NULL builder / NULL out (the builder is consumed anyway). */
  CHECK_RC(tokenward_config_builder_build(NULL, &auth, NULL, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  b = offline_builder();
  CHECK_RC(tokenward_config_builder_build(b, NULL, NULL, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(auth == NULL);

  /* A missing required option: the message names it. */
  b = offline_builder();
  tw_set(b, "client_id", "");
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, &err_n), TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(auth == NULL);
  CHECK(strstr(err, "client_id") != NULL && err_n == strlen(err));

  /* A bad value: the message names the option. */
  b = offline_builder();
  tw_set(b, "http_connect_timeout", "soon");
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, &err_n), TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(strstr(err, "http_connect_timeout") != NULL);
  b = offline_builder();
  tw_set(b, "auth_method", "carrier_pigeon");
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, &err_n), TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(strstr(err, "auth_method") != NULL);
  b = offline_builder();
  tw_set(b, "cafile", "/nonexistent/ca.pem");
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, &err_n), TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(strstr(err, "cafile") != NULL);

  /* A message buffer too small: truncated like snprintf, err_n tells the full length. */
  {
    char small[8];
    b = offline_builder();
    tw_set(b, "thumbprint_verify", "perhaps");
    CHECK_RC(tokenward_config_builder_build(b, &auth, small, sizeof small, &err_n), TOKENWARD_RESULT_CONFIG_INVALID);
    CHECK(err_n >= sizeof small && strlen(small) == sizeof small - 1);
    /* No buffer at all is fine too. */
    b = offline_builder();
    tw_set(b, "thumbprint_verify", "perhaps");
    CHECK_RC(tokenward_config_builder_build(b, &auth, NULL, 0, NULL), TOKENWARD_RESULT_CONFIG_INVALID);
  }
}

static void test_verdicts_offline(void) {
  struct log_sink sink = {0, 0, 0};
  tokenward_config_builder *b = offline_builder();
  const tokenward_authenticator *auth = NULL;
  tokenward_verdict *v = NULL;
  tokenward_str name, value;
  tokenward_metrics m;
  uint64_t hits = 99;
  size_t pos = 99;
  const tokenward_str names[] = {
      {"Host", 4}, {"X-Roles", 7}, {"x_user_id", 9}, {"Content-Type", 12}, {"OPENSTACK-SYSTEM-SCOPE", 22},
  };
  const char *bearer = "Bearer abcdefghijklmnop";

  tw_set(b, "insecure", "true"); /* gives a start-up warning */
  CHECK_RC(tokenward_config_builder_set_log_callback(b, on_log, &sink), TOKENWARD_RESULT_OK);
  CHECK_RC(tokenward_config_builder_set_log_level(b, TOKENWARD_LOG_LEVEL_DEBUG), TOKENWARD_RESULT_OK);
  CHECK_RC(tokenward_config_builder_build(b, &auth, NULL, 0, NULL), TOKENWARD_RESULT_OK);
  if (auth == NULL) return;
  CHECK(sink.saw_warning);
  CHECK(tokenward_authenticator_warning_count(auth) >= 1);
  CHECK_RC(tokenward_authenticator_warning(auth, 0, &name), TOKENWARD_RESULT_OK);
  CHECK(strstr(name.data, "insecure") != NULL);
  CHECK_RC(tokenward_authenticator_warning(auth, 1000, &name), TOKENWARD_RESULT_INDEX_OUT_OF_RANGE);
  CHECK_RC(tokenward_authenticator_warning(auth, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(tokenward_authenticator_warning_count(NULL) == 0);

  /* Misuse of tokenward_authenticate. */
  CHECK_RC(tokenward_authenticate(NULL, bearer, strlen(bearer), NULL, 0, NULL, 0, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticate(auth, bearer, strlen(bearer), NULL, 0, NULL, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticate(auth, NULL, 5, NULL, 0, NULL, 0, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticate(auth, bearer, strlen(bearer), NULL, 5, NULL, 0, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticate(auth, bearer, strlen(bearer), NULL, 0, NULL, 2, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  {
    const tokenward_str bad_names[] = {{"Host", 4}, {NULL, 3}};
    CHECK_RC(tokenward_authenticate(auth, bearer, strlen(bearer), NULL, 0, bad_names, 2, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  }
  CHECK(v == NULL);

  /* No Authorization header: 401 with WWW-Authenticate, decided without the AS; spoofed
   * identity headers are reported for stripping. */
  CHECK_RC(tokenward_authenticate(auth, NULL, 0, NULL, 0, names, 5, &v), TOKENWARD_RESULT_OK);
  CHECK(v != NULL);
  CHECK(!tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_MISSING_TOKEN);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "missing_token"));
  CHECK(tw_str_eq(tokenward_verdict_status_line(v), "401 Unauthorized"));
  CHECK(tokenward_verdict_body(v).len == 130 && strstr(tokenward_verdict_body(v).data, "\"code\": 401") != NULL);
  CHECK(tokenward_verdict_response_header_count(v) == 1);
  CHECK_RC(tokenward_verdict_response_header(v, 0, &name, &value), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(name, "WWW-Authenticate"));
  CHECK(tw_str_eq(value, "Authorization OAuth 2.0 uri=\"https://as.example\""));
  CHECK_RC(tokenward_verdict_response_header(v, 1, &name, &value), TOKENWARD_RESULT_INDEX_OUT_OF_RANGE);
  CHECK_RC(tokenward_verdict_response_header(v, 0, NULL, &value), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(tokenward_verdict_identity_count(v) == 0);
  CHECK_RC(tokenward_verdict_identity(v, 0, &name, &value), TOKENWARD_RESULT_INDEX_OUT_OF_RANGE);
  CHECK(tokenward_verdict_token_info(v).len == 0);
  CHECK(tokenward_verdict_strip_count(v) == 3);
  CHECK_RC(tokenward_verdict_strip_index(v, 0, &pos), TOKENWARD_RESULT_OK);
  CHECK(pos == 1);
  CHECK_RC(tokenward_verdict_strip_index(v, 1, &pos), TOKENWARD_RESULT_OK);
  CHECK(pos == 2);
  CHECK_RC(tokenward_verdict_strip_index(v, 2, &pos), TOKENWARD_RESULT_OK);
  CHECK(pos == 4);
  pos = 99;
  CHECK_RC(tokenward_verdict_strip_index(v, 3, &pos), TOKENWARD_RESULT_INDEX_OUT_OF_RANGE);
  CHECK(pos == 99);
  CHECK_RC(tokenward_verdict_strip_index(v, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  tokenward_verdict_free(v);
  v = NULL;

  /* Accessors on NULL. */
  CHECK(!tokenward_verdict_allowed(NULL));
  CHECK(tokenward_verdict_status(NULL) == 0);
  CHECK(tokenward_verdict_reason_code(NULL) == TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(tokenward_verdict_reason(NULL).len == 0 && tokenward_verdict_reason(NULL).data != NULL);
  CHECK(tokenward_verdict_body(NULL).len == 0);
  CHECK(tokenward_verdict_strip_count(NULL) == 0);
  CHECK_RC(tokenward_verdict_identity(NULL, 0, &name, &value), TOKENWARD_RESULT_NULL_PARAMETER);
  tokenward_verdict_free(NULL);

  /* Malformed (not UTF-8) header: a verdict, not an error. */
  {
    const char raw[] = "Bearer \xff\xfe";
    CHECK_RC(tokenward_authenticate(auth, raw, sizeof raw - 1, NULL, 0, NULL, 0, &v), TOKENWARD_RESULT_OK);
    CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_MALFORMED_TOKEN);
    tokenward_verdict_free(v);
  }

  /* The AS is unreachable: 503 with Retry-After, logged at ERROR. */
  CHECK_RC(tokenward_authenticate(auth, bearer, strlen(bearer), NULL, 0, NULL, 0, &v), TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_status(v) == 503);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_AS_UNAVAILABLE);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "as_unavailable"));
  CHECK(strstr(tokenward_verdict_reason_message(v).data, "abcdefghijklmnop") == NULL); /* no token in text */
  CHECK_RC(tokenward_verdict_response_header(v, 0, &name, &value), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(name, "Retry-After") && tw_str_eq(value, "5"));
  CHECK(sink.saw_error && sink.count > 0);
  tokenward_verdict_free(v);

  /* Metrics. */
  CHECK_RC(tokenward_authenticator_metrics(auth, &m), TOKENWARD_RESULT_OK);
  CHECK(m.introspections == 1 && m.as_errors == 1 && m.cache_hits == 0);
  CHECK(m.cache_evictions == 0 && m.shared_hits == 0 && m.shared_errors == 0);
  CHECK_RC(tokenward_authenticator_metrics(auth, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metrics(NULL, &m), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metric(auth, "cache_hits", 10, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 0);
  CHECK_RC(tokenward_authenticator_metric(auth, "as_errors", 9, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 1);
  CHECK_RC(tokenward_authenticator_metric(auth, "shared_errors", 13, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 0);
  CHECK_RC(tokenward_authenticator_metric(auth, "nope", 4, &hits), TOKENWARD_RESULT_INVALID_ARGUMENT);
  CHECK_RC(tokenward_authenticator_metric(auth, NULL, 0, &hits), TOKENWARD_RESULT_NULL_PARAMETER);

  tokenward_authenticator_free(auth);
  tokenward_authenticator_free(NULL);
}

int main(void) {
  test_version();
  test_result_message();
  test_builder_misuse();
  test_verdicts_offline();
  return tw_report("test_api");
}
