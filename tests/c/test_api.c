/* The tokenward C API without an authorization server: building from options, every misuse
 * and its result code, verdicts decided without the AS (missing token, unreachable AS),
 * header stripping, logging and metrics. */
#include <stddef.h>
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
  tw_set_mapping(b);
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

static void test_request_descriptor(const tokenward_authenticator *auth);
static void test_metrics_text(const tokenward_authenticator *auth);

/* The number of counters in this header's tokenward_metrics (all after struct_size). */
#define TW_METRICS_COUNTERS \
  ((sizeof(tokenward_metrics) - offsetof(tokenward_metrics, cache_hits)) / sizeof(uint64_t))

/* The layout a program built against an older header has: fewer counters. */
struct older_metrics {
  size_t struct_size;
  uint64_t cache_hits, cache_negative_hits, cache_misses, coalesced_waits, introspections, as_errors;
};

/* The layout of a program built against tokenward 0.1.0's header (before the JWT counters). */
struct metrics_0_1_0 {
  size_t struct_size;
  uint64_t cache_hits, cache_negative_hits, cache_misses, coalesced_waits, introspections, as_errors,
      cache_entries, cache_evictions, shared_hits, shared_errors;
};

/* A caller whose struct is smaller (older) or larger (newer) than the library's gets no
 * write past its struct_size; the counters that fit are written and counted. Called after
 * one introspection that failed. */
static void test_metrics_sizes(const tokenward_authenticator *auth) {
  size_t n = 99;
  /* On the heap, sized exactly: AddressSanitizer and valgrind flag any byte written past it. */
  struct older_metrics *heap = malloc(sizeof *heap);
  /* On the stack, followed by a canary. */
  struct {
    struct older_metrics m;
    unsigned char canary[64];
  } stack;
  /* A newer caller: its struct has counters this library does not know yet. */
  struct {
    tokenward_metrics m;
    uint64_t future[4];
  } newer;
  unsigned char want[64];
  size_t i;

  if (heap == NULL) return;
  {
    struct metrics_0_1_0 *old = malloc(sizeof *old);
    if (old != NULL) {
      memset(old, 0, sizeof *old);
      old->struct_size = sizeof *old;
      CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)old, &n), TOKENWARD_RESULT_OK);
      CHECK(n == 10 && old->introspections == 1 && old->as_errors == 1 && old->shared_errors == 0);
      free(old);
    }
  }
  memset(heap, 0, sizeof *heap);
  heap->struct_size = sizeof *heap;
  CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)heap, &n), TOKENWARD_RESULT_OK);
  CHECK(n == 6);
  CHECK(heap->struct_size == sizeof *heap && heap->introspections == 1 && heap->as_errors == 1);
  free(heap);

  memset(&stack, 0, sizeof stack);
  memset(stack.canary, 0xa5, sizeof stack.canary);
  memset(want, 0xa5, sizeof want);
  stack.m.struct_size = sizeof stack.m;
  CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)&stack.m, &n), TOKENWARD_RESULT_OK);
  CHECK(n == 6 && stack.m.introspections == 1 && stack.m.as_errors == 1);
  CHECK(memcmp(stack.canary, want, sizeof want) == 0);

  /* A size that ends inside a counter: only the whole counters before it. */
  memset(&stack, 0, sizeof stack);
  memset(stack.canary, 0xa5, sizeof stack.canary);
  stack.m.struct_size = offsetof(struct older_metrics, as_errors) + 3;
  stack.m.as_errors = 77;
  CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)&stack.m, &n), TOKENWARD_RESULT_OK);
  CHECK(n == 5 && stack.m.introspections == 1 && stack.m.as_errors == 77);
  CHECK(memcmp(stack.canary, want, sizeof want) == 0);

  /* Room for struct_size only: nothing to write, still OK. Smaller, or 0 (never set): refused,
   * nothing written. */
  stack.m.struct_size = sizeof(size_t);
  stack.m.cache_hits = 55;
  CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)&stack.m, &n), TOKENWARD_RESULT_OK);
  CHECK(n == 0 && stack.m.cache_hits == 55);
  n = 99;
  stack.m.struct_size = 0;
  CHECK_RC(tokenward_authenticator_metrics(auth, (tokenward_metrics *)&stack.m, &n), TOKENWARD_RESULT_INVALID_ARGUMENT);
  CHECK(n == 99 && stack.m.cache_hits == 55 && stack.m.struct_size == 0);

  /* Newer and larger: the library fills what it knows and leaves the rest alone. */
  memset(&newer, 0, sizeof newer);
  for (i = 0; i < 4; i++) newer.future[i] = 0x7777;
  newer.m.struct_size = sizeof newer;
  CHECK_RC(tokenward_authenticator_metrics(auth, &newer.m, &n), TOKENWARD_RESULT_OK);
  CHECK(n == TW_METRICS_COUNTERS && newer.m.as_errors == 1);
  for (i = 0; i < 4; i++) CHECK(newer.future[i] == 0x7777);
}

/* Every counter by name, from the core's list: names are NUL-terminated, the values agree
 * with tokenward_authenticator_metric, and the array is never written past out_len. */
static void test_metrics_list(const tokenward_authenticator *auth) {
  tokenward_metric list[64];
  size_t n = 0, total = 0, i;
  int saw_hits = 0, saw_errors = 0;
  uint64_t value;

  CHECK_RC(tokenward_authenticator_metrics_list(auth, NULL, 0, &total), TOKENWARD_RESULT_OK);
  CHECK(total >= TW_METRICS_COUNTERS && total <= 64);
  if (total < 3 || total > 64) return;
  CHECK_RC(tokenward_authenticator_metrics_list(auth, list, 64, &n), TOKENWARD_RESULT_OK);
  CHECK(n == total);
  for (i = 0; i < n; i++) {
    CHECK(list[i].name.len > 0 && list[i].name.data[list[i].name.len] == '\0');
    CHECK_RC(tokenward_authenticator_metric(auth, list[i].name.data, list[i].name.len, &value), TOKENWARD_RESULT_OK);
    CHECK(value == list[i].value);
    if (tw_str_eq(list[i].name, "cache_hits")) saw_hits = (list[i].value == 0);
    if (tw_str_eq(list[i].name, "as_errors")) saw_errors = (list[i].value == 1);
  }
  CHECK(saw_hits && saw_errors);
  /* Names are stable: a second call hands out the same storage. */
  {
    tokenward_metric again[64];
    CHECK_RC(tokenward_authenticator_metrics_list(auth, again, 64, &n), TOKENWARD_RESULT_OK);
    CHECK(again[0].name.data == list[0].name.data);
  }
  /* A short array: only out_len entries, the total still reported. */
  memset(list, 0xee, sizeof list);
  CHECK_RC(tokenward_authenticator_metrics_list(auth, list, 2, &n), TOKENWARD_RESULT_OK);
  CHECK(n == total && list[1].name.len > 0);
  CHECK(list[2].value == 0xeeeeeeeeeeeeeeeeULL);
  /* Misuse. */
  CHECK_RC(tokenward_authenticator_metrics_list(NULL, list, 2, &n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metrics_list(auth, NULL, 2, &n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metrics_list(auth, list, 2, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
}

static void test_verdicts_offline(void) {
  struct log_sink sink = {0, 0, 0};
  tokenward_config_builder *b = offline_builder();
  const tokenward_authenticator *auth = NULL;
  tokenward_verdict *v = NULL;
  tokenward_str name, value;
  tokenward_metrics m;
  size_t n_fields = 0;
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
  m.struct_size = sizeof m;
  CHECK_RC(tokenward_authenticator_metrics(auth, &m, &n_fields), TOKENWARD_RESULT_OK);
  CHECK(n_fields == TW_METRICS_COUNTERS && m.struct_size == sizeof m);
  CHECK(m.introspections == 1 && m.as_errors == 1 && m.cache_hits == 0);
  CHECK(m.cache_evictions == 0 && m.shared_hits == 0 && m.shared_errors == 0);
  /* Introspection mode: the JWT counters exist and stay 0. */
  CHECK(m.jwt_verifications == 0 && m.jwt_refusals == 0 && m.jwks_fetches == 0);
  CHECK(m.jwks_fetch_errors == 0 && m.jwks_unknown_kid_refetches == 0);
  CHECK(m.breaker_rejections == 0 && m.stale_served == 0 && m.breaker_open == 0);
  CHECK(TW_METRICS_COUNTERS == 18);
  CHECK_RC(tokenward_authenticator_metrics(auth, &m, NULL), TOKENWARD_RESULT_OK); /* count optional */
  CHECK_RC(tokenward_authenticator_metrics(auth, NULL, &n_fields), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metrics(NULL, &m, &n_fields), TOKENWARD_RESULT_NULL_PARAMETER);
  test_metrics_sizes(auth);
  test_metrics_list(auth);
  CHECK_RC(tokenward_authenticator_metric(auth, "cache_hits", 10, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 0);
  CHECK_RC(tokenward_authenticator_metric(auth, "as_errors", 9, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 1);
  CHECK_RC(tokenward_authenticator_metric(auth, "shared_errors", 13, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 0);
  hits = 99;
  CHECK_RC(tokenward_authenticator_metric(auth, "jwks_unknown_kid_refetches", 26, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits == 0);
  CHECK_RC(tokenward_authenticator_metric(auth, "nope", 4, &hits), TOKENWARD_RESULT_INVALID_ARGUMENT);
  CHECK_RC(tokenward_authenticator_metric(auth, NULL, 0, &hits), TOKENWARD_RESULT_NULL_PARAMETER);

  test_request_descriptor(auth);
  test_metrics_text(auth);

  tokenward_authenticator_free(auth);
  tokenward_authenticator_free(NULL);
}

/* tokenward_authenticate_request: the same verdict as tokenward_authenticate, also for a
 * program built against an older, smaller tokenward_request (the newer fields absent). */
static void test_request_descriptor(const tokenward_authenticator *auth) {
  const char *bearer = "Bearer abcdefghijklmnop";
  tokenward_request req;
  tokenward_verdict *v = NULL;
  memset(&req, 0, sizeof req);
  req.struct_size = sizeof req;
  req.authorization.data = bearer;
  req.authorization.len = strlen(bearer);
  req.method.data = "GET";
  req.method.len = 3;
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_status(v) == 503); /* the AS of this test is unreachable */
  tokenward_verdict_free(v);
  req.struct_size = offsetof(tokenward_request, peer); /* an older header's struct */
  req.method.data = NULL;                                /* never read: past struct_size */
  req.method.len = 99;
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_status(v) == 503);
  tokenward_verdict_free(v);
  req.struct_size = sizeof req; /* now the NULL pointer with a length is read */
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  req.method.len = 0;
  req.authorization.len = 0; /* no token */
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_status(v) == 401);
  tokenward_verdict_free(v);
  CHECK_RC(tokenward_authenticate_request(auth, NULL, &v), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticate_request(auth, &req, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
}

/* The Prometheus text: a size query, a buffer too small, then the text; with
 * TW_METRICS_TEXT_OUT set it is also written there for prometheus_client's parser. */
static void test_metrics_text(const tokenward_authenticator *auth) {
  size_t needed = 0, again = 0;
  char tiny[8];
  CHECK_RC(tokenward_authenticator_metrics_text(auth, NULL, 0, &needed), TOKENWARD_RESULT_OK);
  CHECK(needed > 100);
  CHECK_RC(tokenward_authenticator_metrics_text(auth, tiny, sizeof tiny, &again),
           TOKENWARD_RESULT_BUFFER_TOO_SMALL);
  CHECK(again == needed);
  CHECK_RC(tokenward_authenticator_metrics_text(auth, NULL, 1, &again), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_authenticator_metrics_text(auth, tiny, sizeof tiny, NULL),
           TOKENWARD_RESULT_NULL_PARAMETER);
  char *text = malloc(2 * needed);
  CHECK(text != NULL);
  if (text == NULL) return;
  CHECK_RC(tokenward_authenticator_metrics_text(auth, text, 2 * needed, &again), TOKENWARD_RESULT_OK);
  CHECK(strlen(text) + 1 == again);
  CHECK(strstr(text, "# TYPE tokenward_introspections_total counter\n") != NULL);
  CHECK(strstr(text, "tokenward_as_errors_total{filter=\"tokenward\",pid=\"") != NULL);
  CHECK(strstr(text, "tokenward_as_request_duration_seconds_bucket{") != NULL);
  const char *path = getenv("TW_METRICS_TEXT_OUT");
  if (path != NULL) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
      fputs(text, f);
      fclose(f);
    }
  }
  free(text);
}

int main(void) {
  test_version();
  test_result_message();
  test_builder_misuse();
  test_verdicts_offline();
  return tw_report("test_api");
}
