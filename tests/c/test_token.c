/* The outbound token client (Client Credentials grant) through the C API, against the real
 * test authorization server (tests/as), driven by tests/c/run_against_as.py: a token for
 * svc-post, the cached token on the second call (one request), invalidate -> a new token, the
 * token accepted by an authenticator introspecting as svc-post, tls_client_auth (svc-tls with
 * client-a's certificate), a wrong secret (CREDENTIALS_REJECTED), an unreachable endpoint and
 * a silent one (AS_UNAVAILABLE within http_connect_timeout), 8 threads sharing one request,
 * configuration errors, NULL checks on every function, and no secret in any message. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tw_test.h"

#define POST_SECRET "p0st-secret-0123456789abcdefghijkl"
#define WRONG_SECRET "wr0ng-secret-ZYXWVUTSRQPONMLKJIHGFEDCBA"

/* Every message the log callbacks and error buffers produced, to check for secrets. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char seen[65536];
static size_t seen_len = 0;
static int warnings_logged = 0;
static char issued[4096]; /* a token obtained in test_post: must not appear in messages */

static void remember(const char *msg, size_t len) {
  pthread_mutex_lock(&seen_lock);
  if (seen_len + len + 2 < sizeof seen) {
    memcpy(seen + seen_len, msg, len);
    seen_len += len;
    seen[seen_len++] = '\n';
    seen[seen_len] = '\0';
  }
  pthread_mutex_unlock(&seen_lock);
}

static void on_log(void *userdata, const tokenward_log_params *params) {
  (void)userdata;
  pthread_mutex_lock(&seen_lock);
  if (params->level == TOKENWARD_LOG_LEVEL_WARNING) warnings_logged++;
  pthread_mutex_unlock(&seen_lock);
  remember(params->message.data, params->message.len);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A builder for svc-post (client_secret_post) against the test AS. */
static tokenward_config_builder *post_builder(const char *secret, const char *scope) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  CHECK_RC(tw_set(b, "token_endpoint", tw_env("TW_TOKEN_ENDPOINT")), TOKENWARD_RESULT_OK);
  CHECK_RC(tw_set(b, "client_id", "svc-post"), TOKENWARD_RESULT_OK);
  CHECK_RC(tw_set(b, "client_secret", secret), TOKENWARD_RESULT_OK);
  CHECK_RC(tw_set(b, "auth_method", "client_secret_post"), TOKENWARD_RESULT_OK);
  CHECK_RC(tw_set(b, "cafile", tw_env("TW_CAFILE")), TOKENWARD_RESULT_OK);
  /* Generous: the first TLS request of a process under valgrind is slow. */
  CHECK_RC(tw_set(b, "http_connect_timeout", "30"), TOKENWARD_RESULT_OK);
  if (scope != NULL) CHECK_RC(tw_set(b, "scope", scope), TOKENWARD_RESULT_OK);
  CHECK_RC(tokenward_config_builder_set_log_callback(b, on_log, NULL), TOKENWARD_RESULT_OK);
  return b;
}

static const tokenward_token_client *build_client(tokenward_config_builder *b) {
  const tokenward_token_client *c = NULL;
  char err[256] = "";
  CHECK_RC(tokenward_config_builder_build_token_client(b, &c, err, sizeof err, NULL),
           TOKENWARD_RESULT_OK);
  if (c == NULL) {
    fprintf(stderr, "token client build failed: %s\n", err);
    exit(1);
  }
  return c;
}

static uint64_t requests(const tokenward_token_client *c) {
  uint64_t n = 999;
  CHECK_RC(tokenward_token_client_requests_sent(c, &n), TOKENWARD_RESULT_OK);
  return n;
}

/* _get that must succeed; returns a copy of the token value (free it). */
static char *get_value(const tokenward_token_client *c) {
  tokenward_token *t = NULL;
  char err[512] = "";
  char *copy = NULL;
  tokenward_str v;
  CHECK_RC(tokenward_token_client_get(c, &t, err, sizeof err, NULL), TOKENWARD_RESULT_OK);
  if (t == NULL) {
    fprintf(stderr, "token request failed: %s\n", err);
    return NULL;
  }
  v = tokenward_token_value(t);
  CHECK(v.len > 10 && v.data[v.len] == '\0' && strlen(v.data) == v.len);
  copy = malloc(v.len + 1);
  if (copy != NULL) memcpy(copy, v.data, v.len + 1);
  tokenward_token_free(t);
  return copy;
}

/* The inbound side, introspecting as svc-post: is `token` accepted, for `user`? */
static int accepted_for(const char *token, const char *user) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  tokenward_verdict *v = NULL;
  char header[8192], err[256] = "";
  tokenward_str name, value;
  size_t i, n;
  int ok = 0, len = snprintf(header, sizeof header, "Bearer %s", token);
  tw_set_as_options(b, tw_env("TW_ENDPOINT"), tw_env("TW_ISSUER"), tw_env("TW_CAFILE"));
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, NULL), TOKENWARD_RESULT_OK);
  if (auth == NULL) {
    fprintf(stderr, "authenticator build failed: %s\n", err);
    return 0;
  }
  CHECK_RC(tokenward_authenticate(auth, header, (size_t)len, NULL, 0, NULL, 0, &v),
           TOKENWARD_RESULT_OK);
  if (tokenward_verdict_allowed(v)) {
    n = tokenward_verdict_identity_count(v);
    for (i = 0; i < n; i++) {
      if (tokenward_verdict_identity(v, i, &name, &value) == TOKENWARD_RESULT_OK &&
          tw_str_eq(name, "X-User-Id"))
        ok = tw_str_eq(value, user);
    }
  } else {
    fprintf(stderr, "token refused: %s\n", tokenward_verdict_reason_message(v).data);
  }
  tokenward_verdict_free(v);
  tokenward_authenticator_free(auth);
  return ok;
}

static void test_result_codes(void) {
  char buf[128];
  size_t n = 0;
  CHECK(TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED == 450);
  CHECK(TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE == 451);
  CHECK(!tokenward_result_is_denial(TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED));
  CHECK(!tokenward_result_is_denial(TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE));
  CHECK(tokenward_result_is_denial(TOKENWARD_RESULT_DENY_AS_UNAVAILABLE));
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED, buf, sizeof buf, &n),
           TOKENWARD_RESULT_OK);
  CHECK(strstr(buf, "rejected") != NULL && n == strlen(buf));
  CHECK_RC(tokenward_result_message(TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE, buf, sizeof buf, &n),
           TOKENWARD_RESULT_OK);
  CHECK(strstr(buf, "unavailable") != NULL && n == strlen(buf));
}

static void test_null_checks(void) {
  const tokenward_token_client *c = NULL;
  tokenward_token *t = (tokenward_token *)&c; /* a sentinel: must stay untouched */
  tokenward_str w = {NULL, 0};
  uint64_t n = 7;
  char err[64] = "untouched";
  size_t err_n = 42;

  CHECK_RC(tokenward_config_builder_build_token_client(NULL, &c, err, sizeof err, &err_n),
           TOKENWARD_RESULT_NULL_PARAMETER);
  /* NULL out: the builder is still consumed (ASan/valgrind would report a leak otherwise). */
  CHECK_RC(tokenward_config_builder_build_token_client(post_builder(POST_SECRET, NULL), NULL, NULL, 0, NULL),
           TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(c == NULL);

  CHECK_RC(tokenward_token_client_get(NULL, &t, err, sizeof err, &err_n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(t == (tokenward_token *)&c && strcmp(err, "untouched") == 0 && err_n == 42);
  CHECK_RC(tokenward_token_client_invalidate(NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_token_client_requests_sent(NULL, &n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(n == 7);
  CHECK(tokenward_token_client_warning_count(NULL) == 0);
  CHECK_RC(tokenward_token_client_warning(NULL, 0, &w), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(tokenward_token_value(NULL).len == 0 && tokenward_token_value(NULL).data != NULL);
  CHECK(tokenward_token_scope(NULL).len == 0 && tokenward_token_scope(NULL).data != NULL);
  CHECK(tokenward_token_expires_in_ms(NULL) == 0);
  tokenward_token_free(NULL);
  tokenward_token_client_free(NULL);

  /* NULL out-params with a real client (no request is sent). */
  c = build_client(post_builder(POST_SECRET, "api:write"));
  CHECK_RC(tokenward_token_client_get(c, NULL, err, sizeof err, &err_n), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_token_client_requests_sent(c, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK_RC(tokenward_token_client_warning(c, 0, NULL), TOKENWARD_RESULT_NULL_PARAMETER);
  CHECK(tokenward_token_client_warning_count(c) == 0);
  CHECK_RC(tokenward_token_client_warning(c, 0, &w), TOKENWARD_RESULT_INDEX_OUT_OF_RANGE);
  CHECK(requests(c) == 0);
  tokenward_token_client_free(c);
}

static void test_config_errors(void) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_token_client *c = NULL;
  char err[256] = "", tiny[8];
  size_t err_n = 0;

  /* Every option of the token client is a known option. */
  static const char *const keys[] = {
      "token_endpoint", "scope",    "client_id",          "client_secret",     "auth_method",
      "audience",       "jwt_key_file", "jwt_algorithm",  "jwt_bearer_time_out", "certfile",
      "keyfile",        "cafile",   "insecure",           "http_connect_timeout", "token_expiry_margin"};
  size_t i;
  for (i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK_RC(tw_set(b, keys[i], ""), TOKENWARD_RESULT_OK);

  /* No token_endpoint. */
  tw_set(b, "client_id", "svc-post");
  tw_set(b, "client_secret", POST_SECRET);
  CHECK_RC(tokenward_config_builder_build_token_client(b, &c, err, sizeof err, &err_n),
           TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(c == NULL && strstr(err, "token_endpoint") != NULL && err_n == strlen(err));
  CHECK(strstr(err, POST_SECRET) == NULL);

  /* A negative margin; the message is truncated like snprintf. */
  b = post_builder(POST_SECRET, NULL);
  tw_set(b, "token_expiry_margin", "-5");
  memset(tiny, 'x', sizeof tiny);
  CHECK_RC(tokenward_config_builder_build_token_client(b, &c, tiny, sizeof tiny, &err_n),
           TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(c == NULL && strlen(tiny) == sizeof tiny - 1 && err_n >= sizeof tiny);

  /* tls_client_auth without a certificate. */
  b = post_builder(POST_SECRET, NULL);
  tw_set(b, "auth_method", "tls_client_auth");
  CHECK_RC(tokenward_config_builder_build_token_client(b, &c, err, sizeof err, NULL),
           TOKENWARD_RESULT_CONFIG_INVALID);
  CHECK(strstr(err, "certfile") != NULL);

  /* The filter's options are allowed alongside. */
  b = post_builder(POST_SECRET, "api:write");
  tw_set_as_options(b, tw_env("TW_ENDPOINT"), tw_env("TW_ISSUER"), tw_env("TW_CAFILE"));
  tw_set(b, "token_endpoint", tw_env("TW_TOKEN_ENDPOINT"));
  c = build_client(b);
  tokenward_token_client_free(c);
}

static void test_post(void) {
  const tokenward_token_client *c = build_client(post_builder(POST_SECRET, NULL));
  const tokenward_token_client *twin;
  tokenward_token *t = NULL, *t2 = NULL;
  tokenward_str v;
  char *first, *again, *fresh, err[512] = "";
  uint64_t ms;
  double start = now_s();

  CHECK(requests(c) == 0);
  CHECK_RC(tokenward_token_client_get(c, &t, err, sizeof err, NULL), TOKENWARD_RESULT_OK);
  printf("first token request: %.2f s\n", now_s() - start);
  if (t == NULL) {
    fprintf(stderr, "token request failed: %s\n", err);
    tokenward_token_client_free(c);
    return;
  }
  CHECK(requests(c) == 1);
  v = tokenward_token_value(t);
  CHECK(v.len > 10 && v.data[v.len] == '\0');
  if (v.len < sizeof issued) memcpy(issued, v.data, v.len + 1);
  ms = tokenward_token_expires_in_ms(t);
  CHECK(ms > 500000 && ms <= 600000); /* the AS's token TTL is 600 s */

  /* Second call: the same token from the cache, no request. */
  CHECK_RC(tokenward_token_client_get(c, &t2, NULL, 0, NULL), TOKENWARD_RESULT_OK);
  CHECK(requests(c) == 1);
  CHECK(tw_str_eq(tokenward_token_value(t2), v.data));
  tokenward_token_free(t2);

  /* A second client with the same options shares the cache. */
  twin = build_client(post_builder(POST_SECRET, NULL));
  again = get_value(twin);
  CHECK(again != NULL && strcmp(again, v.data) == 0);
  CHECK(requests(twin) == 1 && requests(c) == 1);
  tokenward_token_client_free(twin);
  free(again);

  /* The token is accepted by an authenticator (introspecting as svc-post). */
  CHECK(accepted_for(v.data, "svc-post"));

  /* Invalidate: a new token, one more request; the old token object stays valid. */
  first = get_value(c);
  CHECK_RC(tokenward_token_client_invalidate(c), TOKENWARD_RESULT_OK);
  fresh = get_value(c);
  CHECK(requests(c) == 2);
  CHECK(first != NULL && fresh != NULL && strcmp(first, fresh) != 0);
  CHECK(tw_str_eq(tokenward_token_value(t), first));
  CHECK(fresh != NULL && accepted_for(fresh, "svc-post"));
  tokenward_token_free(t);

  /* The token outlives its client. */
  t = NULL;
  CHECK_RC(tokenward_token_client_get(c, &t, NULL, 0, NULL), TOKENWARD_RESULT_OK);
  tokenward_token_client_free(c);
  CHECK(fresh != NULL && tw_str_eq(tokenward_token_value(t), fresh));
  tokenward_token_free(t);
  free(first);
  free(fresh);
}

static void test_scope(void) {
  const tokenward_token_client *c = build_client(post_builder(POST_SECRET, "api"));
  tokenward_token *t = NULL;
  CHECK_RC(tokenward_token_client_get(c, &t, NULL, 0, NULL), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(tokenward_token_scope(t), "api"));
  tokenward_token_free(t);
  tokenward_token_client_free(c);
}

static void test_tls_client_auth(void) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_token_client *c;
  char *value;
  tw_set(b, "token_endpoint", tw_env("TW_TOKEN_ENDPOINT"));
  tw_set(b, "client_id", "svc-tls");
  tw_set(b, "auth_method", "tls_client_auth");
  tw_set(b, "certfile", tw_env("TW_CERT_A"));
  tw_set(b, "keyfile", tw_env("TW_KEY_A"));
  tw_set(b, "cafile", tw_env("TW_CAFILE"));
  tw_set(b, "http_connect_timeout", "30");
  tokenward_config_builder_set_log_callback(b, on_log, NULL);
  c = build_client(b);
  value = get_value(c);
  CHECK(value != NULL && requests(c) == 1);
  /* svc-tls tokens are bound to client-a; without thumbprint_verify they are accepted. */
  CHECK(value != NULL && accepted_for(value, "svc-tls"));
  free(value);
  tokenward_token_client_free(c);
}

static void test_wrong_secret(void) {
  const tokenward_token_client *c = build_client(post_builder(WRONG_SECRET, NULL));
  tokenward_token *t = (tokenward_token *)&c;
  char err[512] = "", tiny[16];
  size_t err_n = 0;
  int before = warnings_logged;

  CHECK_RC(tokenward_token_client_get(c, &t, err, sizeof err, &err_n),
           TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED);
  CHECK(t == (tokenward_token *)&c); /* out untouched */
  CHECK(err_n == strlen(err) && err_n > 0);
  CHECK(strstr(err, "credentials") != NULL);
  remember(err, strlen(err));
  printf("wrong secret: %s\n", err);
  CHECK(warnings_logged == before + 1);
  /* Not cached: a second call asks again; truncated message. */
  CHECK_RC(tokenward_token_client_get(c, &t, tiny, sizeof tiny, &err_n),
           TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED);
  CHECK(strlen(tiny) == sizeof tiny - 1 && err_n == strlen(err));
  CHECK(requests(c) == 2);
  /* Err buffer and length may be NULL. */
  CHECK_RC(tokenward_token_client_get(c, &t, NULL, 0, NULL), TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED);
  tokenward_token_client_free(c);
}

static void unavailable(const char *endpoint, const char *timeout, double max_s, double min_s) {
  tokenward_config_builder *b = post_builder(POST_SECRET, NULL);
  const tokenward_token_client *c;
  tokenward_token *t = NULL;
  char err[512] = "";
  double start, took;
  tw_set(b, "token_endpoint", endpoint);
  tw_set(b, "http_connect_timeout", timeout);
  c = build_client(b);
  start = now_s();
  CHECK_RC(tokenward_token_client_get(c, &t, err, sizeof err, NULL), TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE);
  took = now_s() - start;
  CHECK(t == NULL);
  CHECK(took <= max_s && took >= min_s);
  CHECK(strstr(err, "unreachable") != NULL || strstr(err, "(timeout)") != NULL);
  remember(err, strlen(err));
  printf("%s: %.2f s: %s\n", endpoint, took, err);
  tokenward_token_client_free(c);
}

static void test_unreachable(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  char url[64];
  /* A closed port: connection refused at once. */
  unavailable("http://127.0.0.1:1/token", "2", 3.0, 0.0);
  /* A port that accepts connections (the kernel's backlog) but never answers: the request
   * gives up after http_connect_timeout. */
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    CHECK(!"cannot make a silent listener");
  } else {
    snprintf(url, sizeof url, "http://127.0.0.1:%u/token", (unsigned)ntohs(addr.sin_port));
    unavailable(url, "1", 4.0, 0.9);
  }
  if (fd >= 0) close(fd);
}

#define THREADS 8

struct worker {
  const tokenward_token_client *client;
  pthread_barrier_t *start;
  char value[4096];
  tokenward_result rc;
};

static void *work(void *arg) {
  struct worker *w = arg;
  tokenward_token *t = NULL;
  pthread_barrier_wait(w->start);
  w->rc = tokenward_token_client_get(w->client, &t, NULL, 0, NULL);
  if (w->rc == TOKENWARD_RESULT_OK) {
    tokenward_str v = tokenward_token_value(t);
    if (v.len < sizeof w->value) memcpy(w->value, v.data, v.len + 1);
    tokenward_token_free(t);
  }
  return NULL;
}

static void test_threads(void) {
  /* A scope of its own: a cache no other test has filled. */
  const tokenward_token_client *c = build_client(post_builder(POST_SECRET, "api:read"));
  pthread_t threads[THREADS];
  struct worker workers[THREADS];
  pthread_barrier_t start;
  int i, ok = 0, same = 0;
  CHECK(requests(c) == 0);
  pthread_barrier_init(&start, NULL, THREADS);
  for (i = 0; i < THREADS; i++) {
    workers[i].client = c;
    workers[i].start = &start;
    workers[i].value[0] = '\0';
    workers[i].rc = TOKENWARD_RESULT_INTERNAL;
    CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
  }
  for (i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&start);
  for (i = 0; i < THREADS; i++) {
    ok += workers[i].rc == TOKENWARD_RESULT_OK;
    same += workers[i].value[0] != '\0' && strcmp(workers[i].value, workers[0].value) == 0;
  }
  CHECK(ok == THREADS && same == THREADS);
  CHECK(requests(c) == 1);
  printf("threads: %d ok, %d same token, %llu request(s)\n", ok, same,
         (unsigned long long)requests(c));
  tokenward_token_client_free(c);
}

static void test_no_secret_in_messages(void) {
  CHECK(seen_len > 0);
  CHECK(strstr(seen, POST_SECRET) == NULL);
  CHECK(strstr(seen, WRONG_SECRET) == NULL);
  CHECK(strstr(seen, "secret=") == NULL);
  CHECK(issued[0] != '\0' && strstr(seen, issued) == NULL);
}

int main(void) {
  test_result_codes();
  test_null_checks();
  test_config_errors();
  test_post();
  test_scope();
  test_tls_client_auth();
  test_wrong_secret();
  test_unreachable();
  test_threads();
  test_no_secret_in_messages();
  return tw_report("test_token");
}
