#!/usr/bin/env node
// OAuth 2.0 authorization server for the tokenward test suite and demo,
// built on the OpenID-certified `oidc-provider` package.
//
//   node tests/as/server.mjs --pki DIR --port PORT [--http-port PORT2]
//        [--token-ttl SECONDS] [--delay-ms N] [--verbose] [--exit-on-stdin-eof]
//        [--signing-keys FILE] [--jwt-alg ALG] [--dpop-nonce] [--store FILE]
//
// HTTPS on 127.0.0.1:PORT (issuer https://localhost:PORT), client
// certificates requested but optional. With --http-port the same provider is
// also served over plain HTTP on 127.0.0.1:PORT2 (issuer unchanged).
// When listening, prints exactly one line `READY {json}` to stdout.
//
// A client_credentials request with `resource=urn:tokenward:api` gets an
// RFC 9068 JWT access token (typ at+jwt) signed with the first key of
// --signing-keys (a JSON {"keys": [private JWKs]}, each with kid and alg)
// whose alg is --jwt-alg (default RS256). Without --signing-keys the provider
// has one fresh RSA key, kid as-rs256. Any other resource is invalid_target;
// requests without `resource` get opaque tokens.
//
// DPoP (RFC 9449): a token request with a `DPoP` proof header (ES256, ES384,
// RS256, PS256 or EdDSA) gets a DPoP-bound token (token_type DPoP, cnf.jkt in
// introspection and in JWT access tokens); without a proof nothing changes.
// --dpop-nonce makes the token endpoint require a server nonce (400
// use_dpop_nonce with a DPoP-Nonce header first).
//
// --store FILE keeps tokens (and revocations) in a journal file, so a server
// restarted with the same file and port still knows the tokens it issued, as
// an AS backed by a database does; without it they live in memory only.
//
// Test hooks (outside the provider's routes):
//   GET  /_health  -> 200 {"ok": true}
//   GET  /_stats   -> {"token": {client_id: n, "_all": n}, "introspection": {...}}
//   POST /_reset   -> zeroes the counters
//
// Everything the provider would log (notices, warnings) is suppressed unless
// --verbose is given, and then goes to stderr; tokens and secrets are never
// logged.

import { createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { parseArgs } from 'node:util';

// ---------------------------------------------------------------- options
const { values: opts } = parseArgs({
  options: {
    pki: { type: 'string' },
    port: { type: 'string', default: '0' },
    'http-port': { type: 'string' },
    'token-ttl': { type: 'string', default: '600' },
    'delay-ms': { type: 'string', default: '0' },
    verbose: { type: 'boolean', default: false },
    'exit-on-stdin-eof': { type: 'boolean', default: false },
    'signing-keys': { type: 'string' },
    'jwt-alg': { type: 'string', default: 'RS256' },
    'dpop-nonce': { type: 'boolean', default: false },
    store: { type: 'string' },
  },
  strict: true,
});

if (!opts.pki) {
  process.stderr.write('usage: server.mjs --pki DIR --port PORT [--http-port PORT2] [--token-ttl S] [--delay-ms N] [--verbose] [--signing-keys FILE] [--jwt-alg ALG] [--dpop-nonce] [--store FILE]\n');
  process.exit(2);
}
const PKI = path.resolve(opts.pki);
const TOKEN_TTL = Number.parseInt(opts['token-ttl'], 10);
const DELAY_MS = Number.parseInt(opts['delay-ms'], 10);
const VERBOSE = opts.verbose;
const JWT_ALG = opts['jwt-alg'];
const DPOP_NONCE = opts['dpop-nonce'];
const JWT_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
// The one resource indicator with a (JWT) resource server.
const JWT_RESOURCE = 'urn:tokenward:api';
if (!JWT_ALGS.includes(JWT_ALG)) {
  process.stderr.write(`--jwt-alg must be one of ${JWT_ALGS.join(', ')}\n`);
  process.exit(2);
}
if (!(TOKEN_TTL > 0) || !(DELAY_MS >= 0)) {
  process.stderr.write('--token-ttl must be > 0 and --delay-ms >= 0\n');
  process.exit(2);
}

// stdout carries only the READY line. oidc-provider prints notices with
// console.info and warnings with console.warn; keep them off stdout.
const toStderr = (...args) => { if (VERBOSE) process.stderr.write(`${args.join(' ')}\n`); };
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;
console.debug = toStderr;

const { default: Provider, errors } = await import('oidc-provider');

const pki = (name) => readFileSync(path.join(PKI, name));
const jwkOf = (pubPemFile, alg) => ({
  ...createPublicKey(pki(pubPemFile)).export({ format: 'jwk' }),
  alg,
  use: 'sig',
});

// ------------------------------------------------- client secret encoding
// oidc-provider only allows VSCHAR (printable ASCII) client secrets
// (RFC 6749 Appendix A) and rejects Basic credentials that decode to
// anything else. The svc-basic secret deliberately contains non-ASCII
// characters to exercise the resource server's RFC 6749 §2.3.1 encoding, so
// such secrets are registered in the provider under an ASCII alias and a
// small middleware rewrites a *correctly encoded* Basic header (ASCII on the
// wire, application/x-www-form-urlencoded UTF-8) to carry the alias instead.
// Anything not correctly encoded is passed through unchanged and fails in
// oidc-provider exactly as it would without the shim.
const VSCHAR = /^[\x20-\x7E]*$/;
const secretAlias = (secret) => (VSCHAR.test(secret)
  ? secret
  : `utf8-alias.${Buffer.from(secret, 'utf8').toString('base64url')}`);
const formDecode = (s) => decodeURIComponent(s.replace(/\+/g, '%20'));
const formEncode = (s) => encodeURIComponent(s)
  .replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  .replace(/%20/g, '+');

function rewriteUtf8Basic(ctx) {
  const header = ctx.headers.authorization;
  if (typeof header !== 'string') return;
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0].toLowerCase() !== 'basic') return;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(parts[1])) return;
  const basic = Buffer.from(parts[1], 'base64').toString('utf8');
  const i = basic.indexOf(':');
  if (i === -1) return;
  const rawId = basic.slice(0, i);
  const rawSecret = basic.slice(i + 1);
  if (!VSCHAR.test(rawId) || !VSCHAR.test(rawSecret)) return; // not encoded
  let id;
  let secret;
  try {
    id = formDecode(rawId);
    secret = formDecode(rawSecret);
  } catch {
    return;
  }
  if (VSCHAR.test(secret) || !VSCHAR.test(id)) return;
  const rebuilt = `${formEncode(id)}:${formEncode(secretAlias(secret))}`;
  ctx.req.headers.authorization = `Basic ${Buffer.from(rebuilt, 'utf8').toString('base64')}`;
}

// ---------------------------------------------------------------- clients
const SCOPE = 'api api:read api:write';
const CC = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: SCOPE };

// Subject DN of client-a in RFC 4514 form (most significant RDN last); see
// certificateSubjectMatches below for how it is compared.
const clientA = new X509Certificate(pki('client-a.pem'));
const rfc4514 = (x509) => x509.subject.split('\n').reverse().join(',');

const clients = [
  { ...CC, client_id: 'svc-basic', client_secret: secretAlias('b4sic-S3cret: +%&= ünï'), token_endpoint_auth_method: 'client_secret_basic' },
  { ...CC, client_id: 'svc-post', client_secret: 'p0st-secret-0123456789abcdefghijkl', token_endpoint_auth_method: 'client_secret_post' },
  {
    ...CC,
    client_id: 'svc-secret-jwt',
    client_secret: 'jwt-hmac-secret-0123456789abcdefghijklmnop',
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
  },
  ...[
    ['svc-private-jwt', 'RS256', 'rsa-pkcs1.pub.pem'],
    ['svc-private-jwt-ps256', 'PS256', 'rsa-pkcs8.pub.pem'],
    ['svc-private-jwt-es256', 'ES256', 'ec256-sec1.pub.pem'],
    ['svc-private-jwt-es384', 'ES384', 'ec384.pub.pem'],
    ['svc-private-jwt-es512', 'ES512', 'ec521.pub.pem'],
    ['svc-private-jwt-eddsa', 'EdDSA', 'ed25519.pub.pem'],
  ].map(([client_id, alg, pub]) => ({
    ...CC,
    client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: alg,
    jwks: { keys: [jwkOf(pub, alg)] },
  })),
  {
    ...CC,
    client_id: 'svc-tls',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: rfc4514(clientA), // "CN=client-a,O=tokenward-test"
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    ...CC,
    client_id: 'svc-bound',
    client_secret: 'bound-secret-0123456789',
    token_endpoint_auth_method: 'client_secret_basic',
    tls_client_certificate_bound_access_tokens: true,
  },
  { ...CC, client_id: 'svc-admin', client_secret: 'admin-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic' },
  { ...CC, client_id: 'svc-array', client_secret: 'array-secret-0123456789', token_endpoint_auth_method: 'client_secret_basic' },
];

function rolesFor(clientId) {
  if (clientId === 'svc-admin') return 'admin,member';
  if (clientId === 'svc-array') return ['member', 'reader'];
  return 'member,reader';
}

// ------------------------------------------------------------------ mTLS
function peerCertificatePem(ctx) {
  const sock = ctx.req.socket;
  if (typeof sock?.getPeerCertificate !== 'function') return undefined; // plain HTTP
  const peer = sock.getPeerCertificate();
  if (!peer?.raw) return undefined;
  return new X509Certificate(peer.raw).toString();
}

// ------------------------------------------------------------- token store
// The --store adapter: every record in a Map, every change appended to the
// journal as one JSON line ({key, payload, exp}; payload null = deleted) and
// replayed at start. A line cut short by a kill is skipped.
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
function journalAdapter(file) {
  const records = new Map();
  const now = () => Math.floor(Date.now() / 1000);
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      let r;
      try { r = JSON.parse(line); } catch { continue; }
      if (r.payload === null) records.delete(r.key); else records.set(r.key, r);
    }
  }
  const put = (key, payload, exp) => {
    const r = { key, payload, exp };
    appendFileSync(file, `${JSON.stringify(r)}\n`, { mode: 0o600 }); // it holds tokens
    if (payload === null) records.delete(key); else records.set(key, r);
  };
  const get = (key) => {
    const r = records.get(key);
    return r && (r.exp == null || r.exp > now()) ? r : undefined;
  };
  return class JournalAdapter {
    constructor(model) { this.model = model; }

    key(id) { return `${this.model}:${id}`; }

    async upsert(id, payload, expiresIn) {
      const exp = expiresIn ? now() + expiresIn : null;
      if (this.model === 'Session') put(`sessionUid:${payload.uid}`, id, exp);
      if (payload.userCode) put(`userCode:${payload.userCode}`, id, exp);
      put(this.key(id), payload, exp);
    }

    async find(id) { return get(this.key(id))?.payload; }

    async findByUid(uid) { const r = get(`sessionUid:${uid}`); return r && this.find(r.payload); }

    async findByUserCode(code) { const r = get(`userCode:${code}`); return r && this.find(r.payload); }

    async consume(id) {
      const r = get(this.key(id));
      if (r) put(r.key, { ...r.payload, consumed: now() }, r.exp);
    }

    async destroy(id) { put(this.key(id), null, null); }

    async revokeByGrantId(grantId) {
      for (const [key, r] of records) {
        if (GRANTABLE.has(key.split(':')[0]) && r.payload?.grantId === grantId) put(key, null, null);
      }
    }
  };
}

// ----------------------------------------------------------------- stats
const stats = { token: {}, introspection: {} };
const bump = (kind, key) => { stats[kind][key] = (stats[kind][key] || 0) + 1; };
const resetStats = () => { stats.token = {}; stats.introspection = {}; };

const ROUTES = {
  token: '/token',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
  jwks: '/jwks',
};

// ---------------------------------------------------------------- server
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
let provider; // created once the HTTPS port is known (supports --port 0)
let providerCallback;

function hooks(req, res) {
  const url = new URL(req.url, 'http://x');
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === '/_health' && req.method === 'GET') return send(200, { ok: true });
  if (url.pathname === '/_stats' && req.method === 'GET') return send(200, stats);
  if (url.pathname === '/_reset' && req.method === 'POST') { resetStats(); return send(200, stats); }
  return send(404, { error: 'not_found' });
}

function handler(req, res) {
  if (req.url.startsWith('/_')) {
    hooks(req, res);
    return;
  }
  if (!providerCallback) {
    res.writeHead(503).end();
    return;
  }
  providerCallback(req, res);
}

// Provider keys (published at /jwks). The access-token key is the first one
// whose alg is --jwt-alg.
function loadSigningKeys() {
  if (opts['signing-keys'] === undefined) {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
    return [{ ...rsa, alg: 'RS256', use: 'sig', kid: 'as-rs256' }];
  }
  const { keys } = JSON.parse(readFileSync(opts['signing-keys'], 'utf8'));
  if (!Array.isArray(keys) || !keys.length || !keys.every((k) => typeof k.kid === 'string' && typeof k.alg === 'string')) {
    process.stderr.write('--signing-keys: need {"keys": [JWK, ...]} with kid and alg on every key\n');
    process.exit(2);
  }
  return keys.map((k) => ({ ...k, use: 'sig' }));
}
const signingKeys = loadSigningKeys();
const jwtKey = signingKeys.find((k) => k.alg === JWT_ALG);
if (!jwtKey) {
  process.stderr.write(`no ${JWT_ALG} key in the signing keys\n`);
  process.exit(2);
}

const httpsServer = https.createServer({
  cert: pki('server.pem'),
  key: pki('server.key'),
  ca: pki('ca.pem'),
  requestCert: true,
  rejectUnauthorized: false,
}, handler);

const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve(server.address().port); });
});

const httpsPort = await listen(httpsServer, Number.parseInt(opts.port, 10));
const issuer = `https://localhost:${httpsPort}`;

provider = new Provider(issuer, {
  ...(opts.store === undefined ? {} : { adapter: journalAdapter(path.resolve(opts.store)) }),
  clients,
  jwks: { keys: signingKeys },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  routes: ROUTES,
  // Scopes a client_credentials request may ask for. Without a `resource`
  // parameter, oidc-provider keeps only requested scopes that are listed
  // here (others are silently dropped) and issues an opaque token with no
  // audience.
  scopes: ['openid', 'offline_access', 'api', 'api:read', 'api:write'],
  claims: { openid: ['sub'] },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA'],
    dPoPSigningAlgValues: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // A proof on a token request binds the token to its key (cnf.jkt); no
    // proof, no binding. Nonces are offered always, required with --dpop-nonce.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => DPOP_NONCE,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined, // no resource => opaque token
      // RFC 9068 JWT access tokens for JWT_RESOURCE; anything else is refused.
      getResourceServerInfo(ctx, resource) {
        if (resource !== JWT_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: SCOPE,
          audience: JWT_RESOURCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: TOKEN_TTL,
          jwt: { sign: { alg: JWT_ALG, kid: jwtKey.kid } },
        };
      },
    },
    introspection: {
      enabled: true,
      // any authenticated confidential client may introspect any token
      allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none',
    },
    // oidc-provider 8.x only lets a client revoke its own tokens (no
    // allowedPolicy hook for revocation); other tokens get 400
    // invalid_request "this token does not belong to you".
    revocation: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: false,
      getCertificate: peerCertificatePem,
      certificateAuthorized: (ctx) => ctx.req.socket?.authorized === true,
      certificateSubjectMatches(ctx, property, expected) {
        const pem = peerCertificatePem(ctx);
        if (!pem) return false;
        const cert = new X509Certificate(pem);
        if (property === 'tls_client_auth_subject_dn') return rfc4514(cert) === expected;
        if (property === 'tls_client_auth_san_dns') return cert.checkHost(expected, { subject: 'never' }) === expected;
        if (property === 'tls_client_auth_san_ip') return cert.checkIP(expected) === expected;
        if (property === 'tls_client_auth_san_email') return cert.checkEmail(expected, { subject: 'never' }) === expected;
        return false;
      },
    },
  },
  // Identity mapping claims for the resource server. Stored with the opaque
  // token and returned (top-level) in the introspection response; top-level
  // claims of JWT access tokens (standard claims take precedence).
  extraTokenClaims(ctx, token) {
    if (token.kind !== 'ClientCredentials') return undefined;
    return {
      username: token.clientId,
      user_domain: { id: 'default', name: 'Default' },
      project: { id: `prj-${token.clientId}`, name: 'demo', domain: { id: 'default', name: 'Default' } },
      roles: rolesFor(token.clientId),
    };
  },
  ttl: {
    ClientCredentials: () => TOKEN_TTL,
    AccessToken: () => TOKEN_TTL,
    Grant: () => 3600,
    Interaction: () => 600,
    Session: () => 3600,
    IdToken: () => 3600,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Tests talk to us over 127.0.0.1 and plain HTTP; do not trust proxy headers.
provider.proxy = false;

provider.use(async (ctx, next) => {
  rewriteUtf8Basic(ctx);

  const kind = ctx.method === 'POST' && ctx.path === ROUTES.token ? 'token'
    : ctx.method === 'POST' && ctx.path === ROUTES.introspection ? 'introspection'
      : undefined;

  await next();

  if (kind) {
    bump(kind, '_all');
    const clientId = ctx.oidc?.client?.clientId;
    if (ctx.status === 200 && clientId) bump(kind, clientId);
    if (kind === 'introspection' && DELAY_MS > 0) await sleep(DELAY_MS);
  }
  if (VERBOSE) {
    process.stderr.write(`${ctx.method} ${ctx.path} ${ctx.status} client=${ctx.oidc?.client?.clientId ?? '-'}\n`);
  }
});

// Koa prints 5xx errors with console.error; keep that (stderr) but never the
// request itself.
provider.on('server_error', (ctx, err) => {
  process.stderr.write(`server_error: ${err?.stack || err}\n`);
});

providerCallback = provider.callback();

let httpBase = null;
let httpServer;
if (opts['http-port'] !== undefined) {
  httpServer = http.createServer(handler);
  const p = await listen(httpServer, Number.parseInt(opts['http-port'], 10));
  httpBase = `http://127.0.0.1:${p}`;
}

const ready = {
  issuer,
  port: httpsPort,
  token_endpoint: `${issuer}${ROUTES.token}`,
  introspection_endpoint: `${issuer}${ROUTES.introspection}`,
  revocation_endpoint: `${issuer}${ROUTES.revocation}`,
  jwks_uri: `${issuer}${ROUTES.jwks}`,
  http_base: httpBase,
  http_token_endpoint: httpBase && `${httpBase}${ROUTES.token}`,
  http_introspection_endpoint: httpBase && `${httpBase}${ROUTES.introspection}`,
  http_revocation_endpoint: httpBase && `${httpBase}${ROUTES.revocation}`,
  token_ttl: TOKEN_TTL,
  delay_ms: DELAY_MS,
  jwt_resource: JWT_RESOURCE,
  jwt_alg: JWT_ALG,
  jwt_kid: jwtKey.kid,
  dpop_nonce: DPOP_NONCE,
};
process.stdout.write(`READY ${JSON.stringify(ready)}\n`);

const shutdown = () => {
  httpsServer.close();
  httpServer?.close();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (opts['exit-on-stdin-eof']) {
  // The parent (tests/support/oidc_as.py) holds our stdin open; if it dies
  // without stopping us, stdin reaches EOF and we exit instead of lingering.
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
