/* The tokenward C API against the real test authorization server (tests/as), driven by
 * tests/c/run_against_as.py: an AS token accepted with its identity headers, a garbage token
 * refused (401 + WWW-Authenticate), a certificate-bound token with the right, a wrong and no
 * certificate (thumbprint_verify = true), and 8 threads sharing one authenticator. */
#include <pthread.h>
#include <stdint.h>

#include "tw_test.h"

static const tokenward_authenticator *build(int thumbprint_verify) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  char err[256] = "";
  tw_set_as_options(b, tw_env("TW_ENDPOINT"), tw_env("TW_ISSUER"), tw_env("TW_CAFILE"));
  if (thumbprint_verify) tw_set(b, "thumbprint_verify", "true");
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, NULL), TOKENWARD_RESULT_OK);
  if (auth == NULL) {
    fprintf(stderr, "build failed: %s\n", err);
    exit(1);
  }
  return auth;
}

static tokenward_verdict *check(const tokenward_authenticator *auth, const char *token,
                                const char *cert, size_t cert_len) {
  char header[20000];
  tokenward_verdict *v = NULL;
  int n = snprintf(header, sizeof header, "Bearer %s", token);
  CHECK_RC(tokenward_authenticate(auth, header, (size_t)n, (const uint8_t *)cert, cert_len, NULL, 0, &v),
           TOKENWARD_RESULT_OK);
  return v;
}

static const char *identity(const tokenward_verdict *v, const char *want) {
  size_t i, n = tokenward_verdict_identity_count(v);
  tokenward_str name, value;
  for (i = 0; i < n; i++) {
    if (tokenward_verdict_identity(v, i, &name, &value) == TOKENWARD_RESULT_OK &&
        tw_str_eq(name, want))
      return value.data;
  }
  return NULL;
}

static void test_plain(void) {
  const tokenward_authenticator *auth = build(0);
  const char *token = tw_env("TW_TOKEN");
  tokenward_verdict *v = check(auth, token, NULL, 0);
  tokenward_str name, value;
  tokenward_metrics m = {.struct_size = sizeof(tokenward_metrics)};
  const char *s;

  CHECK(tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 200);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_identity_count(v) > 5);
  CHECK((s = identity(v, "X-User-Id")) != NULL && strcmp(s, "svc-post") == 0);
  CHECK(identity(v, "X-Project-Id") != NULL);
  CHECK(identity(v, "X-Roles") != NULL);
  CHECK((s = identity(v, "X-Identity-Status")) != NULL && strcmp(s, "Confirmed") == 0);
  CHECK(tokenward_verdict_token_info(v).len > 2);
  CHECK(tokenward_verdict_response_header_count(v) == 0);
  CHECK(tokenward_verdict_body(v).len == 0);
  tokenward_verdict_free(v);

  /* Second call: a cache hit. */
  v = check(auth, token, NULL, 0);
  CHECK(tokenward_verdict_allowed(v));
  tokenward_verdict_free(v);

  /* A garbage token: the AS says inactive; 401 with WWW-Authenticate. */
  v = check(auth, "garbage-token-0123456789abcdefghijklmnopqrstu", NULL, 0);
  CHECK(!tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_INACTIVE);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "inactive"));
  CHECK_RC(tokenward_verdict_response_header(v, 0, &name, &value), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(name, "WWW-Authenticate"));
  CHECK(strstr(value.data, tw_env("TW_ISSUER")) != NULL);
  CHECK(strstr(tokenward_verdict_body(v).data, "401") != NULL);
  tokenward_verdict_free(v);

  CHECK_RC(tokenward_authenticator_metrics(auth, &m, NULL), TOKENWARD_RESULT_OK);
  CHECK(m.introspections == 2 && m.cache_hits == 1 && m.as_errors == 0);
  tokenward_authenticator_free(auth);
}

static void test_bound(void) {
  const tokenward_authenticator *auth = build(1);
  const char *token = tw_env("TW_BOUND_TOKEN");
  char *cert_a = NULL, *cert_b = NULL;
  size_t len_a = 0, len_b = 0;
  tokenward_verdict *v;

  if (tw_read_file(tw_env("TW_CERT_A"), &cert_a, &len_a) != 0 ||
      tw_read_file(tw_env("TW_CERT_B"), &cert_b, &len_b) != 0) {
    CHECK(!"cannot read the client certificates");
    goto cleanup;
  }
  v = check(auth, token, cert_a, len_a);
  CHECK(tokenward_verdict_allowed(v));
  tokenward_verdict_free(v);

  v = check(auth, token, cert_b, len_b);
  CHECK(!tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_CERTIFICATE_MISMATCH);
  tokenward_verdict_free(v);

  v = check(auth, token, NULL, 0);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_CERTIFICATE_REQUIRED);
  tokenward_verdict_free(v);

  /* The plain token is not bound: refused when binding is required. */
  v = check(auth, tw_env("TW_TOKEN"), cert_a, len_a);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_CERTIFICATE_MISMATCH);
  tokenward_verdict_free(v);

cleanup:
  free(cert_a);
  free(cert_b);
  tokenward_authenticator_free(auth);
}

#define THREADS 8
#define ROUNDS 200

struct worker {
  const tokenward_authenticator *auth;
  const char *token;
  int allowed, denied, errors;
};

static void *work(void *arg) {
  struct worker *w = arg;
  char good[4096], bad[128];
  int i, ng = snprintf(good, sizeof good, "Bearer %s", w->token);
  int nb = snprintf(bad, sizeof bad, "Bearer not-a-real-token-%p", (void *)w);
  const tokenward_str names[] = {{"X-Roles", 7}, {"Accept", 6}};
  for (i = 0; i < ROUNDS; i++) {
    tokenward_verdict *v = NULL;
    int use_good = i % 4 != 3;
    tokenward_result rc = tokenward_authenticate(w->auth, use_good ? good : bad,
                                                 (size_t)(use_good ? ng : nb), NULL, 0, names, 2, &v);
    if (rc != TOKENWARD_RESULT_OK || v == NULL || tokenward_verdict_strip_count(v) != 1) {
      w->errors++;
    } else if (tokenward_verdict_allowed(v) == use_good) {
      if (use_good) w->allowed++; else w->denied++;
    } else {
      w->errors++;
    }
    tokenward_verdict_free(v);
  }
  return NULL;
}

static void test_threads(void) {
  const tokenward_authenticator *auth = build(0);
  pthread_t threads[THREADS];
  struct worker workers[THREADS];
  tokenward_metrics m = {.struct_size = sizeof(tokenward_metrics)};
  int i, allowed = 0, denied = 0, errors = 0;
  for (i = 0; i < THREADS; i++) {
    workers[i].auth = auth;
    workers[i].token = tw_env("TW_TOKEN");
    workers[i].allowed = workers[i].denied = workers[i].errors = 0;
    CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
  }
  for (i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
    allowed += workers[i].allowed;
    denied += workers[i].denied;
    errors += workers[i].errors;
  }
  CHECK(errors == 0);
  CHECK(allowed == THREADS * ROUNDS * 3 / 4);
  CHECK(denied == THREADS * ROUNDS / 4);
  CHECK_RC(tokenward_authenticator_metrics(auth, &m, NULL), TOKENWARD_RESULT_OK);
  /* One introspection for the good token (concurrent misses coalesce) plus one per bad token. */
  CHECK(m.introspections <= 1 + THREADS);
  CHECK(m.cache_hits >= (uint64_t)(THREADS * ROUNDS * 3 / 4 - THREADS));
  printf("threads: %d allowed, %d denied, %llu introspections, %llu hits, %llu coalesced\n",
         allowed, denied, (unsigned long long)m.introspections, (unsigned long long)m.cache_hits,
         (unsigned long long)m.coalesced_waits);
  tokenward_authenticator_free(auth);
}

int main(void) {
  test_plain();
  test_bound();
  test_threads();
  return tw_report("test_as");
}
