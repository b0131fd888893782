/* Cache-hit latency of tokenward_authenticate (+ tokenward_verdict_free) from C.
 *
 *   bench_hit CERT_PEM CERT_DER X5T [ITERATIONS]
 *
 * A tiny in-process HTTP responder plays the introspection endpoint (it is only asked on
 * the first miss of each token); it answers every token as active, bound to X5T (the
 * base64url SHA-256 thumbprint of CERT). Tokens: a 43-byte opaque one and a ~1.2 KB
 * JWT-shaped one. Authenticators: unbound, and thumbprint_verify = true (cert as PEM and DER).
 * Prints median and p99 per call from 1 and 2 threads. Built and run by scripts/c-bench.sh. */
#include "bench_common.h"

static char x5t[128];
static int answer(const char *request, char *body, size_t size) {
  char cnf[160];
  (void)request;
  snprintf(cnf, sizeof cnf, "\"x5t#S256\": \"%s\"", x5t);
  return bench_claims(body, size, cnf);
}

static const tokenward_authenticator *build(int bound) {
  static const char *const thumbprint[] = {"thumbprint_verify", "true", NULL};
  return bench_build(bound ? thumbprint : NULL);
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
  qsort(all, n, sizeof *all, cmp_u64);
  printf("| %-35s | %7d | %10.3f | %10.3f | %s\n", label, threads, all[n / 2] / 1000.0,
         all[n * 99 / 100] / 1000.0, errors ? "ERRORS" : "");
  free(all);
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
  start_responder(answer);
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
