/* Small helpers shared by the tokenward C tests (header-only). */
#ifndef TW_TEST_H
#define TW_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenward.h"

static int tw_failures = 0;
static int tw_checks = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    tw_checks++;                                                                 \
    if (!(cond)) {                                                               \
      tw_failures++;                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                            \
  } while (0)

#define CHECK_RC(expr, want)                                                     \
  do {                                                                           \
    tokenward_result rc_ = (expr);                                               \
    tw_checks++;                                                                 \
    if (rc_ != (tokenward_result)(want)) {                                       \
      tw_failures++;                                                             \
      fprintf(stderr, "%s:%d: %s returned %u, want %u (%s)\n", __FILE__,          \
              __LINE__, #expr, (unsigned)rc_, (unsigned)(want), #want);          \
    }                                                                            \
  } while (0)

/* Sets a NUL-terminated key/value pair. */
static inline tokenward_result tw_set(tokenward_config_builder *b, const char *key,
                                      const char *value) {
  return tokenward_config_builder_set(b, key, strlen(key), value, strlen(value));
}

static inline int tw_str_eq(tokenward_str s, const char *want) {
  return s.data != NULL && s.len == strlen(want) && memcmp(s.data, want, s.len) == 0 &&
         s.data[s.len] == '\0';
}

static inline const char *tw_env(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') {
    fprintf(stderr, "environment variable %s is not set (run via tests/c/run_against_as.py)\n",
            name);
    exit(2);
  }
  return v;
}

/* Reads a whole file; the caller frees *out. Returns 0 on success. */
static inline int tw_read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  long n;
  char *buf;
  if (f == NULL) return -1;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return -1;
  }
  buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return -1;
  }
  buf[n] = '\0';
  fclose(f);
  *out = buf;
  *len = (size_t)n;
  return 0;
}

/* The options for the test AS (tests/as), svc-post as tokenward's own client. */
/* The claim mapping of the test AS's tokens. */
static inline void tw_set_mapping(tokenward_config_builder *b) {
  tw_set(b, "mapping_project_id", "project.id");
  tw_set(b, "mapping_project_name", "project.name");
  tw_set(b, "mapping_project_domain_id", "project.domain.id");
  tw_set(b, "mapping_project_domain_name", "project.domain.name");
  tw_set(b, "mapping_user_domain_id", "user_domain.id");
  tw_set(b, "mapping_user_domain_name", "user_domain.name");
  tw_set(b, "mapping_roles", "roles");
}

static inline void tw_set_as_options(tokenward_config_builder *b, const char *endpoint,
                                     const char *issuer, const char *cafile) {
  tw_set(b, "introspect_endpoint", endpoint);
  tw_set(b, "audience", issuer);
  tw_set(b, "client_id", "svc-post");
  tw_set(b, "client_secret", "p0st-secret-0123456789abcdefghijkl");
  tw_set(b, "auth_method", "client_secret_post");
  tw_set(b, "cafile", cafile);
  /* Generous: the first TLS handshake of a process takes seconds under valgrind. */
  tw_set(b, "http_connect_timeout", "30");
  tw_set_mapping(b);
}

static inline int tw_report(const char *name) {
  if (tw_failures == 0) {
    printf("%s: ok (%d checks)\n", name, tw_checks);
    return 0;
  }
  printf("%s: FAILED (%d of %d checks)\n", name, tw_failures, tw_checks);
  return 1;
}

#endif
