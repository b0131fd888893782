/* Latency of tokenward_authenticate (+ tokenward_verdict_free) from C for JWTs verified
 * offline: first sight (a token never seen, so a signature verification) and cache hit.
 * Driven by benches/bench_jwt.py (scripts/bench-jwt.sh), which mints the tokens and serves
 * the key set.
 *
 *   bench_jwt HITS LABEL:OPTIONS_FILE:TOKENS_FILE...
 *
 * OPTIONS_FILE holds `name = value` lines (tokenward options; `#` starts a comment).
 * TOKENS_FILE holds one token per line: the first warms the authenticator up (its key-set
 * fetch, or its introspection), each further one is timed once on its first sight, and the
 * second line is then timed HITS times as a cache hit. Each case gets a new authenticator.
 * Prints `RESULT c LABEL first|hit MEDIAN_NS P99_NS SAMPLES`; exits 1 if any token is
 * refused. */
#include "bench_common.h"

static char *trim(char *s) {
  char *end;
  while (*s == ' ' || *s == '\t') s++;
  end = s + strlen(s);
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = '\0';
  return s;
}

static const tokenward_authenticator *build(const char *options_file) {
  size_t len;
  char *text = read_file(options_file, &len), *line, *save = NULL, err[512] = "";
  const tokenward_authenticator *auth = NULL;
  tokenward_config_builder *b = tokenward_config_builder_new();
  for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '='), *name, *value;
    if (*trim(line) == '#' || eq == NULL) continue;
    *eq = '\0';
    name = trim(line);
    value = trim(eq + 1);
    if (tokenward_config_builder_set(b, name, strlen(name), value, strlen(value)) != TOKENWARD_RESULT_OK) {
      fprintf(stderr, "%s: bad option %s\n", options_file, name);
      exit(2);
    }
  }
  free(text);
  if (tokenward_config_builder_build(b, &auth, err, sizeof err, NULL) != TOKENWARD_RESULT_OK) {
    fprintf(stderr, "%s: %s\n", options_file, err);
    exit(2);
  }
  return auth;
}

static int refusals = 0;

/* One call: its latency in ns; a refusal is counted (and reported once). */
static uint64_t timed(const tokenward_authenticator *auth, const char *header, size_t len) {
  static const tokenward_str names[] = {{"Host", 4}, {"Accept", 6}, {"X-Roles", 7}};
  tokenward_verdict *v = NULL;
  uint64_t t0 = now_ns(), t1;
  tokenward_result rc = tokenward_authenticate(auth, header, len, NULL, 0, names, 3, &v);
  int ok = rc == TOKENWARD_RESULT_OK && tokenward_verdict_allowed(v);
  if (!ok && refusals++ == 0)
    fprintf(stderr, "refused: %s\n", v ? tokenward_verdict_reason_message(v).data : "(no verdict)");
  tokenward_verdict_free(v);
  t1 = now_ns();
  return t1 - t0;
}

static void report(const char *label, const char *kind, uint64_t *ns, size_t n) {
  qsort(ns, n, sizeof *ns, cmp_u64);
  printf("RESULT c %s %s %llu %llu %zu\n", label, kind, (unsigned long long)ns[n / 2],
         (unsigned long long)ns[n * 99 / 100], n);
}

/* The tokens of a file as "Bearer ..." headers; *count of them. */
static char **headers(const char *path, size_t *count) {
  size_t len;
  char *text = read_file(path, &len), *line, *save = NULL, **out = NULL;
  size_t n = 0, cap = 0;
  for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    line = trim(line);
    if (*line == '\0') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 1024;
      out = realloc(out, cap * sizeof *out);
      if (out == NULL) exit(2);
    }
    out[n] = malloc(strlen(line) + 8);
    if (out[n] == NULL) exit(2);
    sprintf(out[n], "Bearer %s", line);
    n++;
  }
  free(text);
  *count = n;
  return out;
}

static void run_case(char *spec, size_t hits) {
  char *label = spec, *options = strchr(spec, ':'), *tokens_file;
  const tokenward_authenticator *auth;
  char **tokens;
  size_t n, i;
  uint64_t *ns;
  if (options == NULL || (tokens_file = strchr(options + 1, ':')) == NULL) {
    fprintf(stderr, "bad case %s (want LABEL:OPTIONS_FILE:TOKENS_FILE)\n", spec);
    exit(2);
  }
  *options++ = '\0';
  *tokens_file++ = '\0';
  tokens = headers(tokens_file, &n);
  if (n < 2) {
    fprintf(stderr, "%s: need a warm-up token and at least one more\n", tokens_file);
    exit(2);
  }
  auth = build(options);
  timed(auth, tokens[0], strlen(tokens[0]));
  ns = malloc(sizeof *ns * (n > hits ? n : hits));
  if (ns == NULL) exit(2);
  for (i = 1; i < n; i++) ns[i - 1] = timed(auth, tokens[i], strlen(tokens[i]));
  report(label, "first", ns, n - 1);
  for (i = 0; i < hits; i++) ns[i] = timed(auth, tokens[1], strlen(tokens[1]));
  report(label, "hit", ns, hits);
  free(ns);
  for (i = 0; i < n; i++) free(tokens[i]);
  free(tokens);
  tokenward_authenticator_free(auth);
}

int main(int argc, char **argv) {
  size_t hits;
  int i;
  if (argc < 3) {
    fprintf(stderr, "usage: %s HITS LABEL:OPTIONS_FILE:TOKENS_FILE...\n", argv[0]);
    return 2;
  }
  hits = (size_t)strtoul(argv[1], NULL, 10);
  if (hits == 0) hits = 1;
  for (i = 2; i < argc; i++) run_case(argv[i], hits);
  if (refusals) {
    fprintf(stderr, "%d calls refused\n", refusals);
    return 1;
  }
  return 0;
}
