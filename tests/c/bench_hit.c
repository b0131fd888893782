/* Cache-hit latency of tokenward_authenticate (+ tokenward_verdict_free) from C.
 *
 *   bench_hit CERT_PEM CERT_DER X5T [ITERATIONS]
 *
 * A tiny in-process HTTP responder plays the introspection endpoint (it is only asked on
 * the first miss of each token); it answers every token as active, bound to X5T (the
 * base64url SHA-256 thumbprint of CERT). Tokens: a 43-byte opaque one and a ~1.2 KB
 * JWT-shaped one. Authenticators: unbound, and thumbprint_verify = true (cert as PEM and DER).
 * Prints median and p99 per call from 1 and 2 threads. Built and run by scripts/c-bench.sh. */
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

static char x5t[128];
static int responder_port;

static void *responder(void *arg) {
  int srv = (int)(intptr_t)arg;
  for (;;) {
    char req[65536], body[2048], resp[4096];
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
    n = snprintf(body, sizeof body,
                 "{\"active\": true, \"client_id\": \"svc-bench\", \"username\": \"bench\", "
                 "\"exp\": %ld, \"user_domain\": {\"id\": \"default\", \"name\": \"Default\"}, "
                 "\"project\": {\"id\": \"p1\", \"name\": \"demo\", \"domain\": {\"id\": \"default\", "
                 "\"name\": \"Default\"}}, \"roles\": \"member,reader\", \"cnf\": {\"x5t#S256\": \"%s\"}}",
                 (long)time(NULL) + 3600, x5t);
    m = snprintf(resp, sizeof resp,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 "Connection: close\r\n\r\n%s", n, body);
    if (write(fd, resp, (size_t)m) < 0) perror("write");
    close(fd);
  }
}

static void start_responder(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  pthread_t t;
  int srv = socket(AF_INET, SOCK_STREAM, 0);
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

static const tokenward_authenticator *build(int bound) {
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
  if (bound) tokenward_config_builder_set(b, "thumbprint_verify", 17, "true", 4);
  if (tokenward_config_builder_build(b, &auth, err, sizeof err, NULL) != TOKENWARD_RESULT_OK) {
    fprintf(stderr, "build: %s\n", err);
    exit(1);
  }
  return auth;
}

struct job {
  const tokenward_authenticator *auth;
  const char *header;
  size_t header_len;
  const uint8_t *cert;
  size_t cert_len;
  size_t iterations;
  uint64_t *ns;
  int errors;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *run(void *arg) {
  struct job *j = arg;
  const tokenward_str names[] = {{"Host", 4}, {"Accept", 6}, {"X-Roles", 7}};
  size_t i;
  for (i = 0; i < j->iterations; i++) {
    tokenward_verdict *v = NULL;
    uint64_t t0 = now_ns(), t1;
    tokenward_result rc = tokenward_authenticate(j->auth, j->header, j->header_len, j->cert,
                                                 j->cert_len, names, 3, &v);
    int ok = rc == TOKENWARD_RESULT_OK && tokenward_verdict_allowed(v);
    tokenward_verdict_free(v);
    t1 = now_ns();
    j->ns[i] = t1 - t0;
    if (!ok) j->errors++;
  }
  return NULL;
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void measure(const char *label, const tokenward_authenticator *auth, const char *header,
                    const uint8_t *cert, size_t cert_len, int threads, size_t iterations) {
  pthread_t t[2];
  struct job jobs[2];
  uint64_t *all = malloc(sizeof(uint64_t) * iterations * (size_t)threads);
  tokenward_verdict *v = NULL;
  int i, errors = 0;
  size_t n = iterations * (size_t)threads;
  /* First call: the miss that asks the responder. */
  tokenward_authenticate(auth, header, strlen(header), cert, cert_len, NULL, 0, &v);
  if (!tokenward_verdict_allowed(v)) {
    fprintf(stderr, "%s: warm-up refused: %s\n", label, tokenward_verdict_reason_message(v).data);
    exit(1);
  }
  tokenward_verdict_free(v);
  for (i = 0; i < threads; i++) {
    jobs[i] = (struct job){auth, header, strlen(header), cert, cert_len, iterations, all + (size_t)i * iterations, 0};
    pthread_create(&t[i], NULL, run, &jobs[i]);
  }
  for (i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    errors += jobs[i].errors;
  }
  qsort(all, n, sizeof *all, cmp);
  printf("| %-35s | %7d | %10.3f | %10.3f | %s\n", label, threads, all[n / 2] / 1000.0,
         all[n * 99 / 100] / 1000.0, errors ? "ERRORS" : "");
  free(all);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    perror(path);
    exit(1);
  }
  buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(1);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char short_hdr[64], long_hdr[1400];
  size_t pem_len, der_len, iterations = argc > 4 ? (size_t)atol(argv[4]) : 200000, i;
  char *pem, *der;
  const tokenward_authenticator *unbound, *bound;
  int threads;
  if (argc < 4) {
    fprintf(stderr, "usage: %s CERT_PEM CERT_DER X5T [ITERATIONS]\n", argv[0]);
    return 2;
  }
  pem = read_file(argv[1], &pem_len);
  der = read_file(argv[2], &der_len);
  snprintf(x5t, sizeof x5t, "%s", argv[3]);
  start_responder();
  unbound = build(0);
  bound = build(1);

  /* 43-byte opaque token; ~1.2 KB JWT-shaped token (header.payload.signature). */
  strcpy(short_hdr, "Bearer ");
  for (i = 0; i < 43; i++) short_hdr[7 + i] = b64[(i * 7 + 3) % 64];
  short_hdr[50] = '\0';
  strcpy(long_hdr, "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.");
  for (i = strlen(long_hdr); i < 7 + 1200; i++) long_hdr[i] = (i == 7 + 855) ? '.' : b64[(i * 13 + 5) % 64];
  long_hdr[7 + 1200] = '\0';

  printf("tokenward %s, %zu calls per thread; latency of authenticate + verdict_free, microseconds\n",
         tokenward_version().data, iterations);
  printf("| %-35s | threads | median us  | p99 us     |\n", "case");
  printf("|-------------------------------------|---------|------------|------------|\n");
  for (threads = 1; threads <= 2; threads++) {
    measure("43 B opaque, unbound", unbound, short_hdr, NULL, 0, threads, iterations);
    measure("1.2 KB JWT-shaped, unbound", unbound, long_hdr, NULL, 0, threads, iterations);
    measure("43 B opaque, bound (PEM cert)", bound, short_hdr, (const uint8_t *)pem, pem_len, threads, iterations);
    measure("43 B opaque, bound (DER cert)", bound, short_hdr, (const uint8_t *)der, der_len, threads, iterations);
    measure("1.2 KB JWT-shaped, bound (PEM cert)", bound, long_hdr, (const uint8_t *)pem, pem_len, threads, iterations);
  }
  tokenward_authenticator_free(unbound);
  tokenward_authenticator_free(bound);
  free(pem);
  free(der);
  return 0;
}
