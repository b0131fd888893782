/* Shared by the C benchmarks: a tiny in-process HTTP responder that plays the introspection
 * endpoint (asked only on the first miss of each token), a clock, and file reading. The
 * functions are `static inline` so that a benchmark may use only some of them. */
#ifndef TW_BENCH_COMMON_H
#define TW_BENCH_COMMON_H
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tokenward.h"

/* Writes the JSON introspection answer for one request (headers and form body) into `body`;
 * returns its length. */
typedef int (*bench_answer)(const char *request, char *body, size_t size);

static int responder_port;
static bench_answer responder_answer;

static inline void *responder(void *arg) {
  int srv = (int)(intptr_t)arg;
  for (;;) {
    char req[65536], body[4096], resp[6144];
    size_t got = 0;
    char *hdr_end = NULL;
    long clen = 0;
    int fd = accept(srv, NULL, NULL), n, m;
    if (fd < 0) return NULL;
    for (;;) { /* headers, then Content-Length bytes of body */
      ssize_t r = read(fd, req + got, sizeof req - 1 - got);
      if (r <= 0) break;
      got += (size_t)r;
      req[got] = '\0';
      if (hdr_end == NULL && (hdr_end = strstr(req, "\r\n\r\n")) != NULL) {
        char *cl = strstr(req, "content-length:");
        if (cl == NULL) cl = strstr(req, "Content-Length:");
        clen = cl ? strtol(cl + 15, NULL, 10) : 0;
      }
      if (hdr_end != NULL && (long)(got - (size_t)(hdr_end + 4 - req)) >= clen) break;
    }
    n = responder_answer(req, body, sizeof body);
    m = snprintf(resp, sizeof resp,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 "Connection: close\r\n\r\n%s", n, body);
    if (write(fd, resp, (size_t)m) < 0) perror("write");
    close(fd);
  }
}

static inline void start_responder(bench_answer answer) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  pthread_t t;
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  responder_answer = answer;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(srv, (struct sockaddr *)&a, sizeof a) != 0 || listen(srv, 16) != 0 ||
      getsockname(srv, (struct sockaddr *)&a, &len) != 0) {
    perror("responder");
    exit(1);
  }
  responder_port = ntohs(a.sin_port);
  pthread_create(&t, NULL, responder, (void *)(intptr_t)srv);
  pthread_detach(t);
}

/* The active answer every benchmark token gets, with `cnf` members spliced in. */
static inline int bench_claims(char *body, size_t size, const char *cnf_members) {
  return snprintf(body, size,
                  "{\"active\": true, \"client_id\": \"svc-bench\", \"username\": \"bench\", "
                  "\"exp\": %ld, \"user_domain\": {\"id\": \"default\", \"name\": \"Default\"}, "
                  "\"project\": {\"id\": \"p1\", \"name\": \"demo\", \"domain\": {\"id\": \"default\", "
                  "\"name\": \"Default\"}}, \"roles\": \"member,reader\", \"cnf\": {%s}}",
                  (long)time(NULL) + 3600, cnf_members);
}

/* An authenticator against the responder with the benchmarks' mapping and `extra`
 * (name, value pairs ending with NULL). */
static inline const tokenward_authenticator *bench_build(const char *const *extra) {
  static const char *opts[][2] = {
      {"audience", "https://as.bench"}, {"client_id", "rs"}, {"client_secret", "secret"},
      {"mapping_project_id", "project.id"}, {"mapping_project_name", "project.name"},
      {"mapping_project_domain_id", "project.domain.id"},
      {"mapping_project_domain_name", "project.domain.name"},
      {"mapping_user_domain_id", "user_domain.id"}, {"mapping_user_domain_name", "user_domain.name"},
      {"mapping_roles", "roles"},
  };
  char url[128], err[256] = "";
  size_t i;
  const tokenward_authenticator *auth = NULL;
  tokenward_config_builder *b = tokenward_config_builder_new();
  snprintf(url, sizeof url, "http://127.0.0.1:%d/introspect", responder_port);
  tokenward_config_builder_set(b, "introspect_endpoint", 19, url, strlen(url));
  for (i = 0; i < sizeof opts / sizeof opts[0]; i++)
    tokenward_config_builder_set(b, opts[i][0], strlen(opts[i][0]), opts[i][1], strlen(opts[i][1]));
  for (i = 0; extra != NULL && extra[i] != NULL; i += 2)
    tokenward_config_builder_set(b, extra[i], strlen(extra[i]), extra[i + 1], strlen(extra[i + 1]));
  if (tokenward_config_builder_build(b, &auth, err, sizeof err, NULL) != TOKENWARD_RESULT_OK) {
    fprintf(stderr, "build: %s\n", err);
    exit(1);
  }
  return auth;
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static inline char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    perror(path);
    exit(1);
  }
  buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(1);
  buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
}
#endif
