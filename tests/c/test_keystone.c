/* The C door with validation = keystone: the builder, the X-Auth-Token / X-Service-Token
 * fields of tokenward_request, the verdicts. The first part needs no Keystone (a closed port);
 * with TW_KS_AUTH_URL set (tests/c/run_against_keystone.py starts a real Keystone and sets
 * the TW_KS_* variables) real tokens are validated too. */
#include <stddef.h>

#include "tw_test.h"

static tokenward_str str(const char *s) {
  tokenward_str out;
  out.data = s;
  out.len = s == NULL ? 0 : strlen(s);
  return out;
}

/* The identity header `name` of an allowed verdict, or NULL. */
static const char *identity(const tokenward_verdict *v, const char *name) {
  size_t n = tokenward_verdict_identity_count(v);
  for (size_t i = 0; i < n; i++) {
    tokenward_str k, val;
    if (tokenward_verdict_identity(v, i, &k, &val) == TOKENWARD_RESULT_OK && k.len == strlen(name) &&
        memcmp(k.data, name, k.len) == 0)
      return val.data;
  }
  return NULL;
}

/* The response header `name` of a refusal, or NULL. */
static const char *response_header(const tokenward_verdict *v, const char *name) {
  size_t n = tokenward_verdict_response_header_count(v);
  for (size_t i = 0; i < n; i++) {
    tokenward_str k, val;
    if (tokenward_verdict_response_header(v, i, &k, &val) == TOKENWARD_RESULT_OK && k.len == strlen(name) &&
        memcmp(k.data, name, k.len) == 0)
      return val.data;
  }
  return NULL;
}

static tokenward_verdict *check(const tokenward_authenticator *auth, const char *user, const char *service,
                                const tokenward_str *names, size_t n_names, size_t struct_size) {
  tokenward_request req;
  tokenward_verdict *v = NULL;
  memset(&req, 0, sizeof req);
  req.struct_size = struct_size;
  req.auth_token = str(user);
  req.service_token = str(service);
  req.method = str("GET");
  req.url = str("https://api.example/v2.1/servers?limit=1");
  req.header_names = names;
  req.n_headers = n_names;
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  return v;
}

static const tokenward_authenticator *build(const char *const *pairs, char *err, size_t err_len) {
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  for (size_t i = 0; pairs[i] != NULL; i += 2) CHECK_RC(tw_set(b, pairs[i], pairs[i + 1]), TOKENWARD_RESULT_OK);
  size_t n = 0;
  if (tokenward_config_builder_build(b, &auth, err, err_len, &n) != TOKENWARD_RESULT_OK) return NULL;
  return auth;
}

static void offline(void) {
  char err[256];
  const char *base[] = {"validation", "keystone",
                        "auth_url", "https://127.0.0.1:1/v3",
                        "auth_type", "v3tokenlessauth",
                        "certfile", "tests/data/client-v3.pem",
                        "keyfile", "tests/data/client.key",
                        "project_id", "service-project",
                        "http_request_max_retries", "0",
                        "http_connect_timeout", "2",
                        "www_authenticate_uri", "https://keystone.example/",
                        NULL};
  /* What can never work or cannot be honoured names the option. */
  const char *no_type[] = {"validation", "keystone", "auth_url", "https://127.0.0.1:1/v3", NULL};
  CHECK(build(no_type, err, sizeof err) == NULL);
  CHECK(strstr(err, "option auth_type ") != NULL);
  const char *bind[] = {"validation", "keystone", "auth_url", "https://127.0.0.1:1/v3", "auth_type", "v3tokenlessauth",
                        "certfile", "tests/data/client-v3.pem", "project_id", "p", "enforce_token_bind", "required",
                        NULL};
  CHECK(build(bind, err, sizeof err) == NULL);
  CHECK(strstr(err, "option enforce_token_bind ") != NULL);

  const tokenward_authenticator *auth = build(base, err, sizeof err);
  CHECK(auth != NULL);
  if (auth == NULL) {
    fprintf(stderr, "build: %s\n", err);
    return;
  }
  tokenward_str names[] = {str("Host"), str("OpenStack-System-Scope"), str("X-Auth-Token"), str("x_service_roles")};

  /* No token: 401 with the Keystone challenge, identity headers to strip, Keystone not asked. */
  tokenward_verdict *v = check(auth, NULL, NULL, names, 4, sizeof(tokenward_request));
  CHECK(!tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_MISSING_TOKEN);
  const char *challenge = response_header(v, "WWW-Authenticate");
  CHECK(challenge != NULL && strcmp(challenge, "Keystone uri=\"https://keystone.example/\"") == 0);
  CHECK(strstr(tokenward_verdict_body(v).data, "requires authentication") != NULL);
  size_t at = 99;
  CHECK(tokenward_verdict_strip_count(v) == 2);
  CHECK_RC(tokenward_verdict_strip_index(v, 0, &at), TOKENWARD_RESULT_OK);
  CHECK(at == 1);
  CHECK_RC(tokenward_verdict_strip_index(v, 1, &at), TOKENWARD_RESULT_OK);
  CHECK(at == 3);
  tokenward_verdict_free(v);

  /* A token while Keystone is unreachable: 503 with Retry-After. */
  v = check(auth, "gAAAAAsome-token", NULL, NULL, 0, sizeof(tokenward_request));
  CHECK(tokenward_verdict_status(v) == 503);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_KEYSTONE_UNAVAILABLE);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "keystone_unavailable"));
  CHECK(response_header(v, "Retry-After") != NULL);
  tokenward_verdict_free(v);

  /* A program built against the older struct (no auth_token): the token is not read. */
  v = check(auth, "gAAAAAsome-token", NULL, NULL, 0, offsetof(tokenward_request, auth_token));
  CHECK(tokenward_verdict_status(v) == 401);
  tokenward_verdict_free(v);

  /* The Authorization-only call is not the way to check Keystone tokens: never allowed. */
  v = NULL;
  CHECK_RC(tokenward_authenticate(auth, "Bearer x", 8, NULL, 0, NULL, 0, &v), TOKENWARD_RESULT_OK);
  CHECK(!tokenward_verdict_allowed(v));
  tokenward_verdict_free(v);
  tokenward_authenticator_free(auth);

  /* delay_auth_decision: no token passes, marked Invalid, with no token_info. */
  const char *delay[24];
  size_t i = 0;
  for (; base[i] != NULL; i++) delay[i] = base[i];
  delay[i++] = "delay_auth_decision";
  delay[i++] = "true";
  delay[i] = NULL;
  auth = build(delay, err, sizeof err);
  CHECK(auth != NULL);
  if (auth == NULL) return;
  v = check(auth, NULL, NULL, names, 4, sizeof(tokenward_request));
  CHECK(tokenward_verdict_allowed(v));
  CHECK(tokenward_verdict_identity_count(v) == 1);
  CHECK(identity(v, "X-Identity-Status") != NULL && strcmp(identity(v, "X-Identity-Status"), "Invalid") == 0);
  CHECK(tokenward_verdict_token_info(v).len == 0);
  CHECK(tokenward_verdict_strip_count(v) == 2);
  tokenward_verdict_free(v);
  tokenward_authenticator_free(auth);
}

/* bearer_validation: a request without auth_token but with Authorization takes the OAuth
 * path (here to an unreachable AS: as_unavailable), one with auth_token the Keystone path. */
static void combined(void) {
  char err[256];
  const char *opts[] = {"validation", "keystone",
                        "auth_url", "https://127.0.0.1:1/v3",
                        "auth_type", "v3tokenlessauth",
                        "certfile", "tests/data/client-v3.pem",
                        "keyfile", "tests/data/client.key",
                        "project_id", "service-project",
                        "http_request_max_retries", "0",
                        "http_connect_timeout", "2",
                        "bearer_validation", "introspection",
                        "introspect_endpoint", "http://127.0.0.1:1/introspect",
                        "audience", "https://as.example",
                        "client_id", "rs",
                        "client_secret", "s3cret",
                        "mapping_project_id", "project.id",
                        "mapping_project_name", "project.name",
                        "mapping_project_domain_id", "project.domain.id",
                        "mapping_project_domain_name", "project.domain.name",
                        "mapping_user_domain_id", "user_domain.id",
                        "mapping_user_domain_name", "user_domain.name",
                        "mapping_roles", "roles",
                        NULL};
  const tokenward_authenticator *auth = build(opts, err, sizeof err);
  CHECK(auth != NULL);
  if (auth == NULL) {
    fprintf(stderr, "build: %s\n", err);
    return;
  }
  tokenward_request req;
  tokenward_verdict *v = NULL;
  memset(&req, 0, sizeof req);
  req.struct_size = sizeof req;
  req.authorization = str("Bearer some-oauth-token");
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "as_unavailable"));
  tokenward_verdict_free(v);
  req.auth_token = str("gAAAAAsome-keystone-token");
  CHECK_RC(tokenward_authenticate_request(auth, &req, &v), TOKENWARD_RESULT_OK);
  CHECK(tw_str_eq(tokenward_verdict_reason(v), "keystone_unavailable"));
  tokenward_verdict_free(v);
  tokenward_authenticator_free(auth);
}

/* Against the real Keystone of tests/c/run_against_keystone.py. */
static void real_keystone(void) {
  char err[512];
  const char *opts[] = {"validation", "keystone",
                        "auth_url", tw_env("TW_KS_AUTH_URL"),
                        "auth_type", "v3tokenlessauth",
                        "cafile", tw_env("TW_KS_CAFILE"),
                        "certfile", tw_env("TW_KS_CERTFILE"),
                        "keyfile", tw_env("TW_KS_KEYFILE"),
                        "project_name", tw_env("TW_KS_PROJECT_NAME"),
                        "project_domain_name", tw_env("TW_KS_PROJECT_DOMAIN_NAME"),
                        "http_connect_timeout", "30",
                        NULL};
  const tokenward_authenticator *auth = build(opts, err, sizeof err);
  CHECK(auth != NULL);
  if (auth == NULL) {
    fprintf(stderr, "build: %s\n", err);
    return;
  }
  const char *user = tw_env("TW_KS_USER_TOKEN");
  tokenward_verdict *v = check(auth, user, NULL, NULL, 0, sizeof(tokenward_request));
  CHECK(tokenward_verdict_allowed(v));
  const char *status = identity(v, "X-Identity-Status");
  const char *name = identity(v, "X-User-Name");
  CHECK(status != NULL && strcmp(status, "Confirmed") == 0);
  CHECK(name != NULL && strcmp(name, tw_env("TW_KS_USER_NAME")) == 0);
  CHECK(identity(v, "X-Project-Id") != NULL);
  CHECK(identity(v, "OpenStack-System-Scope") == NULL);
  CHECK(strstr(tokenward_verdict_token_info(v).data, "\"expires_at\"") != NULL);
  tokenward_verdict_free(v);

  /* The same token again: a cache hit. */
  v = check(auth, user, tw_env("TW_KS_SERVICE_TOKEN"), NULL, 0, sizeof(tokenward_request));
  CHECK(tokenward_verdict_allowed(v));
  const char *service = identity(v, "X-Service-Identity-Status");
  CHECK(service != NULL && strcmp(service, "Confirmed") == 0);
  CHECK(identity(v, "X-Service-User-Name") != NULL);
  tokenward_verdict_free(v);
  uint64_t hits = 0;
  CHECK_RC(tokenward_authenticator_metric(auth, "cache_hits", 10, &hits), TOKENWARD_RESULT_OK);
  CHECK(hits >= 1);

  v = check(auth, "gAAAAAnot-a-token-keystone-knows", NULL, NULL, 0, sizeof(tokenward_request));
  CHECK(tokenward_verdict_status(v) == 401);
  CHECK(tokenward_verdict_reason_code(v) == TOKENWARD_RESULT_DENY_KEYSTONE_TOKEN);
  tokenward_verdict_free(v);
  tokenward_authenticator_free(auth);
}

int main(void) {
  offline();
  combined();
  const char *url = getenv("TW_KS_AUTH_URL");
  if (url != NULL && *url != '\0') {
    real_keystone();
  } else {
    printf("test_keystone: TW_KS_AUTH_URL not set, real Keystone part not run\n");
  }
  return tw_report("test_keystone");
}
