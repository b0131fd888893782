/* Offline JWT validation through the C API against the real test authorization server
 * (tests/as), driven by tests/c/run_against_as.py: an authenticator built with
 * `validation = jwt` by the ordinary builder (keys found by discovery from token_issuer),
 * an RFC 9068 JWT from the AS allowed with its identity headers, tampered and unknown-kid
 * JWTs refused with 401, and the JWT counters read through the struct, by name and in the
 * list. No introspection happens. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tw_test.h"

static const tokenward_authenticator *build(void) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  char err[256] = "";
  tw_set(b, "validation", "jwt");
  tw_set(b, "token_issuer", tw_env("TW_ISSUER"));
  tw_set(b, "token_audience", tw_env("TW_JWT_RESOURCE"));
  tw_set(b, "cafile", tw_env("TW_CAFILE"));
  /* Generous: the first TLS handshake of a process takes seconds under valgrind. */
  tw_set(b, "http_connect_timeout", "30");
  /* Lets the unknown-kid case below refetch after one second. */
  tw_set(b, "jwks_min_refresh_interval", "1");
  tw_set_mapping(b);
  CHECK_RC(tokenward_config_builder_build(b, &auth, err, sizeof err, NULL), TOKENWARD_RESULT_OK);
  if (auth == NULL) {
    fprintf(stderr, "build failed: %s\n", err);
    exit(1);
  }
  return auth;
}

static tokenward_verdict *check(const tokenward_authenticator *auth, const char *token) {
  static const tokenward_str names[] = {{"X-Roles", 7}, {"Accept", 6}};
  char header[20000];
  tokenward_verdict *v = NULL;
  int n = snprintf(header, sizeof header, "Bearer %s", token);
  CHECK(n > 0 && (size_t)n < sizeof header);
  CHECK_RC(tokenward_authenticate(auth, header, (size_t)n, NULL, 0, names, 2, &v), TOKENWARD_RESULT_OK);
  CHECK(tokenward_verdict_strip_count(v) == 1);
  return v;
}

static const char *identity(const tokenward_verdict *v, const char *want) {
  size_t i, n = tokenward_verdict_identity_count(v);
  tokenward_str name, value;
  for (i = 0; i < n; i++) {
    if (tokenward_verdict_identity(v, i, &name, &value) == TOKENWARD_RESULT_OK && tw_str_eq(name, want))
      return value.data;
  }
  return NULL;
}

/* A 401 for a JWT refused locally: invalid_jwt, a challenge, and no token in the message. */
static void check_refused(const tokenward_authenticator *auth, const char *token) {
  tokenward_verdict *v = check(auth, token);
  tokenward_str name, value;
  CHECK(!tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_INVALID_JWT);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "invalid_jwt"));
  CHECK(strstr(tokenward_verdict_reason_message(v).data, token) == NULL);
  CHECK_RC(tokenward_verdict_response_header(v, 0, &name, &value), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(name, "WWW-Authenticate"));
  CHECK(tokenward_verdict_identity_count(v) == 0);
  tokenward_verdict_free(v);
}

/* A copy of `token` with one character in the middle of segment `segment` (0-2) changed:
 * still valid base64url, no longer what the AS signed. Freed by the caller. */
static char *tamper(const char *token, int segment) {
  char *copy = malloc(strlen(token) + 1);
  char *start, *end;
  int i;
  if (copy == NULL) exit(1);
  strcpy(copy, token);
  start = copy;
  for (i = 0; i < segment; i++) start = strchr(start, '.') + 1;
  end = strchr(start, '.');
  if (end == NULL) end = start + strlen(start);
  start += (end - start) / 2;
  *start = *start == 'A' ? 'B' : 'A';
  return copy;
}

/* Unpadded base64url of `len` bytes into `out` (room for 4 * len / 3 + 4). */
static void b64url(const unsigned char *in, size_t len, char *out) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t i;
  for (i = 0; i + 2 < len; i += 3) {
    unsigned long w = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
    *out++ = alphabet[w >> 18 & 63];
    *out++ = alphabet[w >> 12 & 63];
    *out++ = alphabet[w >> 6 & 63];
    *out++ = alphabet[w & 63];
  }
  if (len - i == 1) {
    *out++ = alphabet[in[i] >> 2];
    *out++ = alphabet[(in[i] & 3) << 4];
  } else if (len - i == 2) {
    *out++ = alphabet[in[i] >> 2];
    *out++ = alphabet[(in[i] & 3) << 4 | in[i + 1] >> 4];
    *out++ = alphabet[(in[i + 1] & 15) << 2];
  }
  *out = '\0';
}

/* `token` with its header replaced by one naming a key the AS does not have. */
static char *with_unknown_kid(const char *token) {
  static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"tw-no-such-key\"}";
  const char *rest = strchr(token, '.');
  char *out = malloc(sizeof header * 2 + strlen(token));
  if (out == NULL || rest == NULL) exit(1);
  b64url((const unsigned char *)header, sizeof header - 1, out);
  strcat(out, rest);
  return out;
}

static uint64_t by_name(const tokenward_authenticator *auth, const char *name) {
  uint64_t value = UINT64_MAX;
  CHECK_RC(tokenward_authenticator_metric(auth, name, strlen(name), &value), TOKENWARD_RESULT_OK);
  return value;
}

static tokenward_metrics metrics(const tokenward_authenticator *auth) {
  tokenward_metrics m;
  size_t n = 0;
  memset(&m, 0xff, sizeof m);
  m.struct_size = sizeof m;
  CHECK_RC(tokenward_authenticator_metrics(auth, &m, &n), TOKENWARD_RESULT_OK);
  CHECK(n == (sizeof m - offsetof(tokenward_metrics, cache_hits)) / sizeof(uint64_t));
  return m;
}

/* The JWT counters agree between the struct, the by-name reader and the list. */
static void check_counters_agree(const tokenward_authenticator *auth) {
  static const char *const jwt_names[] = {"jwt_verifications", "jwt_refusals", "jwks_fetches",
                                          "jwks_fetch_errors", "jwks_unknown_kid_refetches"};
  tokenward_metrics m = metrics(auth);
  const uint64_t in_struct[] = {m.jwt_verifications, m.jwt_refusals, m.jwks_fetches, m.jwks_fetch_errors,
                                m.jwks_unknown_kid_refetches};
  tokenward_metric list[64];
  size_t total = 0, i, j;
  CHECK_RC(tokenward_authenticator_metrics_list(auth, list, 64, &total), TOKENWARD_RESULT_OK);
  CHECK(total >= 15 && total <= 64);
  for (i = 0; i < 5; i++) {
    int listed = 0;
    CHECK(by_name(auth, jwt_names[i]) == in_struct[i]);
    for (j = 0; j < total && j < 64; j++) {
      if (tw_str_eq(list[j].name, jwt_names[i])) listed = list[j].value == in_struct[i];
    }
    CHECK(listed);
  }
}

static void pause_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

static int segments(const char *token) {
  int n = 1;
  for (; *token; token++) n += *token == '.';
  return n;
}

int main(void) {
  const char *jwt = tw_env("TW_JWT");
  const tokenward_authenticator *auth;
  char *bad_signature, *bad_payload, *unknown_kid;
  tokenward_verdict *v;
  tokenward_metrics m;
  const char *s;

  if (segments(jwt) != 3) {
    fprintf(stderr, "TW_JWT is not a compact JWS\n");
    return 1;
  }
  auth = build();
  bad_signature = tamper(jwt, 2);
  bad_payload = tamper(jwt, 1);
  unknown_kid = with_unknown_kid(jwt);

  CHECK(tokenward_authenticator_warning_count(auth) == 0);
  m = metrics(auth);
  CHECK(m.jwks_fetches == 0 && m.jwt_verifications == 0); /* keys are fetched on first use */

  /* The AS's JWT: verified offline, allowed, mapped like an introspection answer. */
  v = check(auth, jwt);
  CHECK(tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 200);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_OK);
  CHECK((s = identity(v, "X-User-Id")) != NULL && strcmp(s, "svc-post") == 0);
  CHECK((s = identity(v, "X-Project-Id")) != NULL && strcmp(s, "prj-svc-post") == 0);
  CHECK((s = identity(v, "X-Roles")) != NULL && strcmp(s, "member,reader") == 0);
  CHECK((s = identity(v, "X-Identity-Status")) != NULL && strcmp(s, "Confirmed") == 0);
  tokenward_verdict_free(v);
  m = metrics(auth);
  CHECK(m.jwt_verifications == 1 && m.jwt_refusals == 0);
  CHECK(m.jwks_fetches == 1 && m.jwks_fetch_errors == 0 && m.jwks_unknown_kid_refetches == 0);
  CHECK(m.introspections == 0 && m.as_errors == 0 && m.cache_misses == 1);

  /* Again: a cache hit, no second verification. */
  v = check(auth, jwt);
  CHECK(tokenward_verdict_allowed(v));
  tokenward_verdict_free(v);
  m = metrics(auth);
  CHECK(m.cache_hits == 1 && m.jwt_verifications == 1);

  /* Tampered signature, tampered payload, an opaque token: refused locally. */
  check_refused(auth, bad_signature);
  check_refused(auth, bad_payload);
  check_refused(auth, "opaque-token-0123456789abcdefghijklmnop");
  m = metrics(auth);
  CHECK(m.jwt_verifications == 1 && m.jwt_refusals == 3 && m.jwks_fetches == 1);

  /* An unknown kid, past jwks_min_refresh_interval: one refetch of the key set, then 401. */
  pause_ms(1200);
  check_refused(auth, unknown_kid);
  m = metrics(auth);
  CHECK(m.jwt_refusals == 4 && m.jwks_fetches == 2 && m.jwks_unknown_kid_refetches == 1);
  CHECK(m.jwks_fetch_errors == 0 && m.introspections == 0);
  check_counters_agree(auth);
  printf("jwt: %llu verified, %llu refused, %llu key-set fetches (%llu for an unknown kid)\n",
         (unsigned long long)m.jwt_verifications, (unsigned long long)m.jwt_refusals,
         (unsigned long long)m.jwks_fetches, (unsigned long long)m.jwks_unknown_kid_refetches);

  free(bad_signature);
  free(bad_payload);
  free(unknown_kid);
  tokenward_authenticator_free(auth);
  return tw_report("test_jwt");
}
