/* A small HTTP/1.1 server protected by tokenward (plain POSIX sockets, one thread per
 * connection, one request per connection).
 *
 *   protected_server CONFIG_FILE [PORT]
 *
 * CONFIG_FILE holds tokenward options as `key = value` lines (`#` starts a comment), the same
 * names as the paste-deploy section. Every request needs `Authorization: Bearer <token>`:
 * allowed requests get 200 and the identity headers as a JSON object; refused ones get the
 * verdict's status, its WWW-Authenticate / Retry-After header and JSON body. Identity headers
 * sent by the client are stripped (reported in "stripped"). Listens on 127.0.0.1:PORT (0 or
 * absent: any free port) and prints `listening on PORT` once ready. A request with more than
 * MAX_HEADERS header lines gets 431 and one with a malformed header line 400: every header
 * name must be shown to tokenward, or a spoofed identity header could pass unstripped.
 *
 * Build (shared library; the rpath lets it run without ldconfig):
 *   cc -std=c11 protected_server.c $(pkg-config --cflags --libs tokenward) \
 *     -Wl,-rpath,"$(pkg-config --variable=libdir tokenward)" -lpthread
 * or statically linked:
 *   cc -std=c11 protected_server.c $(pkg-config --cflags tokenward) \
 *     $(pkg-config --variable=libs_static tokenward)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tokenward.h"

#define MAX_REQUEST 32768
#define MAX_HEADERS 100

static const tokenward_authenticator *auth;

static void on_log(void *userdata, const tokenward_log_params *params) {
  static const char *names[] = {"?", "DEBUG", "INFO", "WARNING", "ERROR"};
  (void)userdata;
  fprintf(stderr, "tokenward %s: %s\n", params->level <= 4 ? names[params->level] : "?",
          params->message.data);
}

static char *trim(char *s) {
  char *end;
  while (isspace((unsigned char)*s)) s++;
  end = s + strlen(s);
  while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
  return s;
}

/* Reads `key = value` lines into the builder. Returns 0 on success. */
static int load_options(tokenward_config_builder *b, const char *path) {
  char line[4096];
  int lineno = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    char *eq, *key, *value, *hash;
    lineno++;
    if ((hash = strchr(line, '#')) != NULL) *hash = '\0';
    key = trim(line);
    if (*key == '\0' || *key == '[') continue; /* blank line or an ini section header */
    if ((eq = strchr(key, '=')) == NULL) {
      fprintf(stderr, "%s:%d: expected key = value\n", path, lineno);
      fclose(f);
      return -1;
    }
    *eq = '\0';
    key = trim(key);
    value = trim(eq + 1);
    if (tokenward_config_builder_set(b, key, strlen(key), value, strlen(value)) != TOKENWARD_RESULT_OK) {
      fprintf(stderr, "%s:%d: unknown option %s\n", path, lineno, key);
      fclose(f);
      return -1;
    }
  }
  fclose(f);
  return 0;
}

/* Appends printf-style text to buf (bounded). */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
  va_list ap;
  int n;
  if (*len >= cap) return;
  va_start(ap, fmt);
  n = vsnprintf(buf + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len = (size_t)n + *len > cap ? cap : *len + (size_t)n;
}

/* Appends s as a JSON string. */
static void append_json(char *buf, size_t cap, size_t *len, tokenward_str s) {
  size_t i;
  append(buf, cap, len, "\"");
  for (i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.data[i];
    if (c == '"' || c == '\\') append(buf, cap, len, "\\%c", c);
    else if (c < 0x20) append(buf, cap, len, "\\u%04x", c);
    else append(buf, cap, len, "%c", c);
  }
  append(buf, cap, len, "\"");
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Answers with an empty body and closes. */
static void refuse(int fd, const char *status) {
  char out[256];
  int n = snprintf(out, sizeof out, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
  if (n > 0 && (size_t)n < sizeof out) write_all(fd, out, (size_t)n);
}

/* A header name is a non-empty RFC 9110 token (no spaces: "X-Roles : x" and folded lines
 * are refused rather than passed on under a name that is not checked). */
static int is_token(const char *s, size_t len) {
  size_t i;
  if (len == 0) return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\0' || (!isalnum(c) && strchr("!#$%&'*+-.^_`|~", c) == NULL)) return 0;
  }
  return 1;
}

static void handle(int fd) {
  char req[MAX_REQUEST + 1];
  size_t got = 0;
  char *end = NULL, *line, *next;
  tokenward_str names[MAX_HEADERS];
  size_t n_names = 0;
  const char *authz = NULL;
  size_t authz_len = 0;
  tokenward_verdict *v = NULL;
  char out[65536];
  char body[32768];
  size_t out_len = 0, body_len = 0, i;

  while (got < MAX_REQUEST && end == NULL) {
    ssize_t r = read(fd, req + got, MAX_REQUEST - got);
    if (r <= 0) return;
    got += (size_t)r;
    req[got] = '\0';
    end = strstr(req, "\r\n\r\n");
  }
  if (end == NULL) { /* the header section does not fit in MAX_REQUEST bytes */
    refuse(fd, "431 Request Header Fields Too Large");
    return;
  }
  *end = '\0';
  /* Skip the request line, then split "Name: value" lines. Every header name must reach
   * tokenward_authenticate, or a spoofed identity header could slip past the stripping: a
   * request with more headers than we can hold, or a line we cannot parse, is refused. */
  line = strstr(req, "\r\n");
  while (line != NULL) {
    char *colon, *value;
    line += 2;
    next = strstr(line, "\r\n");
    if (next != NULL) *next = '\0';
    colon = strchr(line, ':');
    if (colon == NULL || !is_token(line, (size_t)(colon - line)) || strpbrk(line, "\r\n") != NULL) {
      refuse(fd, "400 Bad Request"); /* no name, a folded line, or a bare CR/LF inside */
      return;
    }
    if (n_names == MAX_HEADERS) {
      refuse(fd, "431 Request Header Fields Too Large");
      return;
    }
    names[n_names].data = line;
    names[n_names].len = (size_t)(colon - line);
    value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    if (names[n_names].len == 13 && strncasecmp(line, "Authorization", 13) == 0) {
      if (authz != NULL) { /* two credentials: which one would the application see? */
        refuse(fd, "400 Bad Request");
        return;
      }
      authz = value;
      authz_len = strlen(value);
    }
    n_names++;
    line = next;
  }

  if (tokenward_authenticate(auth, authz, authz_len, NULL, 0, names, n_names, &v) != TOKENWARD_RESULT_OK) {
    static const char err[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    write_all(fd, err, sizeof err - 1);
    return;
  }
  if (tokenward_verdict_allowed(v)) {
    /* The application's answer: the identity it was handed, as JSON. */
    tokenward_str name, value;
    append(body, sizeof body, &body_len, "{");
    for (i = 0; i < tokenward_verdict_identity_count(v); i++) {
      tokenward_verdict_identity(v, i, &name, &value);
      append(body, sizeof body, &body_len, "%s", i ? ", " : "");
      append_json(body, sizeof body, &body_len, name);
      append(body, sizeof body, &body_len, ": ");
      append_json(body, sizeof body, &body_len, value);
    }
    append(body, sizeof body, &body_len, "%s\"stripped\": [", i ? ", " : "");
    for (i = 0; i < tokenward_verdict_strip_count(v); i++) {
      size_t pos;
      tokenward_verdict_strip_index(v, i, &pos);
      append(body, sizeof body, &body_len, "%s", i ? ", " : "");
      append_json(body, sizeof body, &body_len, names[pos]);
    }
    append(body, sizeof body, &body_len, "]}\n");
    append(out, sizeof out, &out_len, "HTTP/1.1 200 OK\r\n");
  } else {
    tokenward_str name, value, b = tokenward_verdict_body(v);
    append(out, sizeof out, &out_len, "HTTP/1.1 %s\r\n", tokenward_verdict_status_line(v).data);
    for (i = 0; i < tokenward_verdict_response_header_count(v); i++) {
      tokenward_verdict_response_header(v, i, &name, &value);
      append(out, sizeof out, &out_len, "%s: %s\r\n", name.data, value.data);
    }
    append(body, sizeof body, &body_len, "%.*s", (int)b.len, b.data);
    fprintf(stderr, "refused: %s\n", tokenward_verdict_reason_message(v).data);
  }
  append(out, sizeof out, &out_len,
         "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
  tokenward_verdict_free(v);
  write_all(fd, out, out_len);
  write_all(fd, body, body_len);
}

static void *serve(void *arg) {
  int fd = (int)(intptr_t)arg;
  handle(fd); /* tokenward_authenticate is safe to call from every thread at once */
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  tokenward_config_builder *b;
  char err[512] = "";
  struct sockaddr_in addr;
  socklen_t addr_len = sizeof addr;
  int srv, one = 1;

  if (argc < 2) {
    fprintf(stderr, "usage: %s CONFIG_FILE [PORT]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  b = tokenward_config_builder_new();
  tokenward_config_builder_set_log_callback(b, on_log, NULL);
  if (load_options(b, argv[1]) != 0) {
    tokenward_config_builder_free(b);
    return 1;
  }
  if (tokenward_config_builder_build(b, &auth, err, sizeof err, NULL) != TOKENWARD_RESULT_OK) {
    fprintf(stderr, "configuration error: %s\n", err);
    return 1;
  }

  srv = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((uint16_t)(argc > 2 ? atoi(argv[2]) : 0));
  if (srv < 0 || bind(srv, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(srv, 64) != 0 ||
      getsockname(srv, (struct sockaddr *)&addr, &addr_len) != 0) {
    perror("listen");
    tokenward_authenticator_free(auth);
    return 1;
  }
  printf("listening on %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  for (;;) {
    pthread_t t;
    int fd = accept(srv, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
      close(fd);
      continue;
    }
    pthread_detach(t);
  }
  close(srv);
  tokenward_authenticator_free(auth);
  return 0;
}
