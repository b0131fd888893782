/* Cache-hit latency of the C door with validation = keystone: tokenward_authenticate_request
 * (X-Auth-Token, and X-Auth-Token + X-Service-Token) + tokenward_verdict_free, against the real
 * Keystone whose TW_KS_* variables tests/c/run_against_keystone.py or benches/bench_keystone.py
 * set (the first call of each token is the miss that validates it there).
 *
 *   bench_keystone [ITERATIONS]
 *
 * Prints median and p99 per call, in microseconds, as one markdown table. */
#include "bench_common.h"

static const char *env(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') {
    fprintf(stderr, "%s is not set (run through benches/bench_keystone.py)\n", name);
    exit(2);
  }
  return v;
}

static tokenward_str str(const char *s) {
  tokenward_str out = {s, s == NULL ? 0 : strlen(s)};
  return out;
}

static void measure(const char *label, const tokenward_authenticator *auth, const char *user, const char *service,
                    size_t iterations) {
  const tokenward_str names[] = {{"Host", 4}, {"Accept", 6}, {"X-Auth-Token", 12}, {"X-Roles", 7}};
  tokenward_request req;
  uint64_t *ns = malloc(sizeof(uint64_t) * iterations);
  int errors = 0;
  memset(&req, 0, sizeof req);
  req.struct_size = sizeof req;
  req.auth_token = str(user);
  req.service_token = str(service);
  req.method = str("GET");
  req.url = str("http://api.example/v2.1/servers");
  req.header_names = names;
  req.n_headers = 4;
  for (size_t i = 0; i <= iterations; i++) {
    tokenward_verdict *v = NULL;
    uint64_t t0 = now_ns();
    tokenward_result rc = tokenward_authenticate_request(auth, &req, &v);
    int ok = rc == TOKENWARD_RESULT_OK && tokenward_verdict_allowed(v);
    if (i == 0 && !ok) {
      fprintf(stderr, "%s: refused: %s\n", label, tokenward_verdict_reason_message(v).data);
      exit(1);
    }
    tokenward_verdict_free(v);
    if (i > 0) { /* the first call is the miss */
      ns[i - 1] = now_ns() - t0;
      if (!ok) errors++;
    }
  }
  qsort(ns, iterations, sizeof *ns, cmp_u64);
  printf("| C door hit: %-28s | %10.3f | %10.3f | %s\n", label, ns[iterations / 2] / 1000.0,
         ns[iterations * 99 / 100] / 1000.0, errors ? "ERRORS" : "");
  free(ns);
}

int main(int argc, char **argv) {
  size_t iterations = argc > 1 ? (size_t)atol(argv[1]) : 200000;
  const char *pairs[] = {"validation", "keystone",
                         "auth_url", env("TW_KS_AUTH_URL"),
                         "auth_type", "v3tokenlessauth",
                         "cafile", env("TW_KS_CAFILE"),
                         "certfile", env("TW_KS_CERTFILE"),
                         "keyfile", env("TW_KS_KEYFILE"),
                         "project_name", env("TW_KS_PROJECT_NAME"),
                         "project_domain_name", env("TW_KS_PROJECT_DOMAIN_NAME"),
                         NULL};
  tokenward_config_builder *b = tokenward_config_builder_new();
  const tokenward_authenticator *auth = NULL;
  char err[512];
  for (size_t i = 0; pairs[i] != NULL; i += 2)
    tokenward_config_builder_set(b, pairs[i], strlen(pairs[i]), pairs[i + 1], strlen(pairs[i + 1]));
  if (tokenward_config_builder_build(b, &auth, err, sizeof err, NULL) != TOKENWARD_RESULT_OK) {
    fprintf(stderr, "build: %s\n", err);
    return 1;
  }
  measure("X-Auth-Token", auth, env("TW_KS_USER_TOKEN"), NULL, iterations);
  measure("X-Auth-Token + X-Service-Token", auth, env("TW_KS_USER_TOKEN"), env("TW_KS_SERVICE_TOKEN"), iterations);
  tokenward_authenticator_free(auth);
  return 0;
}
