/* Cache-hit cost of proof of possession from C (tokenward_authenticate_request +
 * tokenward_verdict_free): a Bearer hit beside a hit bound to a certificate forwarded by a
 * trusted proxy in each header format, and a DPoP hit with a fresh ES256 or RS256 proof per
 * call. One thread, median and p99.
 *
 *   bench_pop DIR [ITERATIONS]
 *
 * DIR (written by scripts/c-bench.sh) holds `x5t` (the certificate's thumbprint), `forms`
 * (lines `format<TAB>header value`), and per algorithm `ES256.jkt` / `ES256.proofs` (one
 * proof per line, each for GET https://api.example/v1/vnf_instances with the token `dpop-ES256-token`)
 * and the same for RS256. */
#include "bench_common.h"

static char x5t[128], jkt_es[64], jkt_rs[64];

/* Tokens named dpop-ES256-… / dpop-RS256-… are bound to that key, the others to the cert. */
static int answer(const char *request, char *body, size_t size) {
  char cnf[256];
  if (strstr(request, "token=dpop-ES256") != NULL)
    snprintf(cnf, sizeof cnf, "\"jkt\": \"%s\"", jkt_es);
  else if (strstr(request, "token=dpop-RS256") != NULL)
    snprintf(cnf, sizeof cnf, "\"jkt\": \"%s\"", jkt_rs);
  else
    snprintf(cnf, sizeof cnf, "\"x5t#S256\": \"%s\"", x5t);
  return bench_claims(body, size, cnf);
}

static tokenward_str str(const char *s) {
  tokenward_str v = {s, s ? strlen(s) : 0};
  return v;
}

/* Times `n` checks; `proofs` (may be NULL) gives a distinct DPoP proof to each. */
static void measure(const char *label, const tokenward_authenticator *auth, tokenward_request req,
                    char **proofs, size_t n) {
  uint64_t *ns = malloc(sizeof(uint64_t) * n);
  size_t i, errors = 0;
  tokenward_verdict *v = NULL;
  /* The miss first (the last proof is kept for it). */
  if (proofs) req.dpop_proof = str(proofs[n]);
  tokenward_authenticate_request(auth, &req, &v);
  if (!tokenward_verdict_allowed(v)) {
    fprintf(stderr, "%s: refused: %s\n", label, tokenward_verdict_reason_message(v).data);
    exit(1);
  }
  tokenward_verdict_free(v);
  for (i = 0; i < n; i++) {
    uint64_t t0;
    if (proofs) req.dpop_proof = str(proofs[i]);
    t0 = now_ns();
    tokenward_authenticate_request(auth, &req, &v);
    if (!tokenward_verdict_allowed(v)) errors++;
    tokenward_verdict_free(v);
    ns[i] = now_ns() - t0;
  }
  qsort(ns, n, sizeof *ns, cmp_u64);
  printf("| %-36s | %9.2f | %7.2f |%s\n", label, ns[n / 2] / 1000.0, ns[n * 99 / 100] / 1000.0,
         errors ? " ERRORS" : "");
  free(ns);
}

/* The lines of a file, split in place. */
static char **lines(char *text, size_t *count) {
  size_t cap = 1024, n = 0;
  char **out = malloc(cap * sizeof *out), *save = NULL, *line;
  for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    if (n == cap) out = realloc(out, (cap *= 2) * sizeof *out);
    out[n++] = line;
  }
  *count = n;
  return out;
}

static char *dir_file(const char *dir, const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return read_file(path, len);
}

int main(int argc, char **argv) {
  static const char *const algs[] = {"ES256", "RS256"};
  size_t len, n_forms, i, iterations = argc > 2 ? (size_t)atol(argv[2]) : 20000;
  char *text, **forms;
  const tokenward_authenticator *plain;
  tokenward_request req;
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [ITERATIONS]\n", argv[0]);
    return 2;
  }
  text = dir_file(argv[1], "x5t", &len);
  snprintf(x5t, sizeof x5t, "%s", strtok(text, "\n"));
  free(text);
  start_responder(answer);
  memset(&req, 0, sizeof req);
  req.struct_size = sizeof req;
  req.authorization = str("Bearer opaque-bench-token-0123456789abcdef01234");
  req.peer = str("127.0.0.1");
  req.method = str("GET");
  req.url = str("https://api.example/v1/vnf_instances");

  printf("tokenward %s, %zu calls each, 1 thread; tokenward_authenticate_request + verdict_free\n",
         tokenward_version().data, iterations);
  printf("| %-36s | median us | p99 us  |\n", "case");
  printf("|--------------------------------------|-----------|---------|\n");
  plain = bench_build(NULL);
  measure("Bearer, unbound", plain, req, NULL, iterations);
  tokenward_authenticator_free(plain);

  text = dir_file(argv[1], "forms", &len);
  forms = lines(text, &n_forms);
  for (i = 0; i < n_forms; i++) {
    char label[64], *value = strchr(forms[i], '\t');
    const char *extra[] = {"thumbprint_verify", "true", "client_cert_header", "X-SSL-Client-Cert",
                           "trusted_proxies", "127.0.0.1", "client_cert_header_format", forms[i], NULL};
    const tokenward_authenticator *auth;
    tokenward_request bound = req;
    if (value == NULL) continue;
    *value++ = '\0';
    auth = bench_build(extra);
    bound.forwarded_cert = str(value);
    snprintf(label, sizeof label, "Bearer, proxy header %s", forms[i]);
    measure(label, auth, bound, NULL, iterations);
    tokenward_authenticator_free(auth);
  }
  free(forms);
  free(text);

  for (i = 0; i < 2; i++) {
    char name[32], label[64], token[64], *jkt_text, *proof_text, **proofs;
    size_t n_proofs;
    const char *extra[] = {"dpop", "allowed", NULL};
    const tokenward_authenticator *auth;
    tokenward_request dpop = req;
    snprintf(name, sizeof name, "%s.jkt", algs[i]);
    jkt_text = dir_file(argv[1], name, &len);
    snprintf(i == 0 ? jkt_es : jkt_rs, sizeof jkt_es, "%s", strtok(jkt_text, "\n"));
    free(jkt_text);
    snprintf(name, sizeof name, "%s.proofs", algs[i]);
    proof_text = dir_file(argv[1], name, &len);
    proofs = lines(proof_text, &n_proofs);
    if (n_proofs < iterations + 1) {
      fprintf(stderr, "%s: %zu proofs, need %zu\n", name, n_proofs, iterations + 1);
      return 1;
    }
    snprintf(token, sizeof token, "DPoP dpop-%s-token", algs[i]);
    dpop.authorization = str(token);
    auth = bench_build(extra);
    snprintf(label, sizeof label, "DPoP %s proof", algs[i]);
    measure(label, auth, dpop, proofs, iterations);
    tokenward_authenticator_free(auth);
    free(proofs);
    free(proof_text);
  }
  return 0;
}
