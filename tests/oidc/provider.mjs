// OpenID provider fixture for sessiongate's OIDC tests.
//
// Wraps panva's oidc-provider (a real, certified OP) with:
//   * auto-login interactions (no form: GET /interaction/:uid signs in the
//     "current user" and grants every requested scope/claim),
//   * a minimal RP-initiated logout confirmation page (#confirm button),
//   * back-channel logout to each client's backchannel_logout_uri,
//   * JSON test controls under /test/ (see README.md).
//
// Usage: node provider.mjs '<json config>'
// Prints one line {"issuer":"http://localhost:<port>","port":<port>} when
// ready; exits on SIGTERM/SIGINT or when stdin closes.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

// ---------------------------------------------------------------- config --

const cfg = JSON.parse(process.argv[2] || '{}');
const clientsIn = cfg.clients || [];
const ACCESS_TTL = Number(cfg.access_token_ttl || 60);
const ID_TTL = Number(cfg.id_token_ttl || 300);
const REFRESH_TTL = Number(cfg.refresh_token_ttl || 24 * 3600);
const SESSION_TTL = Number(cfg.session_ttl || 14 * 24 * 3600);
// Rotate refresh tokens on every use (a reused, already rotated refresh token
// then revokes the whole grant, as oidc-provider does). Set false to keep the
// provider's default (rotate only after 70% of the TTL).
const ROTATE_RT = cfg.rotate_refresh_tokens !== false;
const DEBUG = !!(cfg.debug || process.env.OIDC_FIXTURE_DEBUG);

const clientById = new Map();
const clients = clientsIn.map((c) => {
  const m = {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    ...c,
  };
  if (m.backchannel_logout_uri && m.backchannel_logout_session_required === undefined) {
    m.backchannel_logout_session_required = true;
  }
  clientById.set(m.client_id, m);
  return m;
});

function log(...args) {
  if (DEBUG) console.error('[oidc-fixture]', ...args);
}

// ------------------------------------------------------------------ keys --

async function rsaJwk(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

// Newest RSA key first: oidc-provider signs with the first matching key.
const rsaKeys = [await rsaJwk('k1')];
const ecKey = await (async () => {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid: 'e1', alg: 'ES256', use: 'sig' };
})();
let rogueKey; // generated on first use, never published
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function currentSigningJwk() {
  return rsaKeys[0];
}

async function privateKeyFor(jwk) {
  return jose.importJWK(jwk, jwk.alg);
}

// --------------------------------------------------------------- storage --
// A process-wide in-memory adapter (shared by every Provider instance this
// process builds, so sessions/grants/tokens survive key rotation) that can
// also enumerate sessions by account.

const store = new Map(); // key "Model:id" -> { payload, exp (ms|Infinity) }
const grantIndex = new Map(); // grantId -> Set of keys
const uidIndex = new Map(); // session uid -> session id
const userCodeIndex = new Map();
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);

function getLive(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e.payload;
}

class FixtureAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const exp = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.delete(key); // keep insertion order = last write order
    store.set(key, { payload, exp });
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
  }

  async find(id) {
    return getLive(this.key(id));
  }

  async findByUid(uid) {
    const id = uidIndex.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodeIndex.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const p = getLive(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const p = getLive(key);
    store.delete(key);
    if (p?.uid && uidIndex.get(p.uid) === id) uidIndex.delete(p.uid);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) || []) store.delete(key);
    grantIndex.delete(grantId);
  }
}

function sessionsOf(sub) {
  const out = [];
  for (const [key, e] of store) {
    if (!key.startsWith('Session:') || e.exp <= Date.now()) continue;
    if (e.payload.accountId === sub) out.push({ id: key.slice(8), payload: e.payload });
  }
  return out; // oldest first
}

// ----------------------------------------------------------------- users --

const users = new Map();
function putUser(u) {
  const user = {
    sub: u.sub,
    email: u.email ?? `${u.sub}@example.com`,
    name: u.name ?? u.sub,
    groups: u.groups ?? [],
  };
  users.set(user.sub, user);
  return user;
}
let currentSub = putUser({
  sub: 'alice', email: 'alice@example.com', name: 'Alice Example', groups: ['staff'],
}).sub;

// ------------------------------------------------------------ test state --

let tamper = null; // { mode, grant }
let hangJwks = false;
let hangDiscovery = false;
let discoveryOverrides = null; // merged into the discovery document while set
const stats = { token_requests: { authorization_code: 0, refresh_token: 0 }, userinfo_requests: 0, last_sid: null };
const backchannelStatuses = []; // filled by the fetch hook below
const hanging = new Set(); // responses we never answer (closed at exit)

// ------------------------------------------------------------------ html --

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body>${body}</body></html>`;
}

// --------------------------------------------------------------- provider --

let issuer; // set once the port is known
let provider; // current instance
let providerHandler;

function buildProvider() {
  const configuration = {
    clients,
    adapter: FixtureAdapter,
    jwks: { keys: [...rsaKeys, ecKey] },
    cookies: { keys: cookieKeys },
    findAccount(ctx, sub) {
      const user = users.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub, email: user.email, email_verified: true, name: user.name, groups: user.groups,
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    responseTypes: ['code'],
    // Refresh tokens whenever the client may use the refresh_token grant,
    // without requiring offline_access.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: ROTATE_RT ? () => true : undefined,
    ttl: {
      AccessToken: ACCESS_TTL,
      AuthorizationCode: 60,
      IdToken: ID_TTL,
      RefreshToken: REFRESH_TTL,
      Interaction: 600,
      Session: SESSION_TTL,
      Grant: SESSION_TTL,
    },
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const button = '<button id="confirm" type="submit" name="logout" value="yes">Sign out</button>';
          ctx.body = page('Sign out', `<h1>Sign out of the provider?</h1>${form.replace('</form>', `${button}</form>`)}`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p>Signed out at the provider.</p>');
        },
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Provider error</h1><pre id="error">${esc(JSON.stringify(out))}</pre>`);
    },
    // Outgoing requests (back-channel logout): oidc-provider blocks loopback
    // targets by default (SSRF protection); the fixture must reach 127.0.0.1.
    fetch: async (url, options) => {
      const { dispatcher, ...rest } = options;
      const started = Date.now();
      try {
        const res = await globalThis.fetch(url, rest);
        backchannelStatuses.push({ url, status: res.status, ms: Date.now() - started });
        return res;
      } catch (err) {
        backchannelStatuses.push({ url, status: 0, error: String(err?.message || err) });
        throw err;
      }
    },
  };
  if (!configuration.rotateRefreshToken) delete configuration.rotateRefreshToken;

  const p = new Provider(issuer, configuration);
  p.use(async (ctx, next) => {
    if (ctx.path === '/me') stats.userinfo_requests += 1;
    return next();
  });
  p.use(tokenMiddleware);
  p.on('server_error', (ctx, err) => console.error('[oidc-fixture] server_error', err));
  p.on('backchannel.error', (ctx, err, client) => log('backchannel.error', client.clientId, err.message));
  p.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description || ''));
  p.on('authorization.error', (ctx, err) => log('authorization.error', err.message, err.error_description || ''));
  return p;
}

function install() {
  provider = buildProvider();
  providerHandler = provider.callback();
}

// ---------------------------------------------------- token middleware --

async function readRaw(req) {
  const chunks = [];
  for await (const c of req.iterator({ destroyOnReturn: false })) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function b64json(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

async function signJwt(payload, header, key) {
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header).sign(key);
}

async function getRogueKey() {
  if (!rogueKey) rogueKey = await rsaJwk('rogue');
  return rogueKey;
}

async function tamperIdToken(mode, idToken, client) {
  const header = jose.decodeProtectedHeader(idToken);
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const kid = header.kid;
  const ownJwk = rsaKeys.find((k) => k.kid === kid) || currentSigningJwk();
  switch (mode) {
    case 'wrong_aud': claims.aud = 'someone-else'; break;
    case 'wrong_iss': claims.iss = 'http://evil.invalid'; break;
    case 'expired': claims.iat = now - 3600 - 300; claims.exp = now - 3600; break;
    case 'future_iat': claims.iat = now + 3600; claims.exp = now + 3600 + 300; break;
    case 'wrong_nonce': claims.nonce = `wrong-${crypto.randomBytes(8).toString('hex')}`; break;
    case 'no_nonce': delete claims.nonce; break;
    case 'alg_none':
      return `${b64json({ alg: 'none' })}.${b64json(claims)}.`;
    case 'unknown_key': {
      const rk = await getRogueKey();
      return signJwt(claims, { alg: 'RS256', kid: 'rogue' }, await privateKeyFor(rk));
    }
    case 'hs256':
      return signJwt(claims, { alg: 'HS256', kid }, new TextEncoder().encode(client.client_secret));
    case 'resign': break; // re-sign unchanged (fixture self-test)
    case 'iat_ahead_30s': claims.iat = now + 30; claims.exp = now + 330; break; // a provider clock 30 s fast
    default: throw new Error(`unknown tamper mode ${mode}`);
  }
  return signJwt(claims, { alg: 'RS256', kid: ownJwk.kid }, await privateKeyFor(ownJwk));
}

const PRE_MODES = new Set(['hang', 'error', 'refresh_invalid_grant']);

async function tokenMiddleware(ctx, next) {
  if (ctx.method !== 'POST' || ctx.path !== '/token') return next();

  let grantType;
  if (tamper && PRE_MODES.has(tamper.mode)) {
    // Peek at the form body to decide before the provider acts on it; the
    // provider then reads the already-read body from req.body.
    const raw = await readRaw(ctx.req);
    ctx.req.body = raw;
    grantType = new URLSearchParams(raw).get('grant_type');
    if (stats.token_requests[grantType] !== undefined) stats.token_requests[grantType] += 1;
    const wanted = tamper.mode === 'refresh_invalid_grant' ? 'refresh_token' : tamper.grant;
    if (grantType === wanted) {
      const { mode } = tamper;
      tamper.times -= 1;
      if (tamper.times <= 0) tamper = null;
      log('tamper', mode, grantType);
      if (mode === 'hang') {
        await new Promise((resolve) => {
          hanging.add(ctx.res);
          ctx.res.on('close', () => { hanging.delete(ctx.res); resolve(); });
        });
        ctx.respond = false;
        return undefined;
      }
      ctx.status = 400;
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'invalid_grant', error_description: 'grant request is invalid (fixture)' };
      return undefined;
    }
    await next();
    return undefined;
  }

  await next();
  grantType = ctx.oidc?.params?.grant_type;
  if (stats.token_requests[grantType] !== undefined) stats.token_requests[grantType] += 1;

  if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    try {
      const c = jose.decodeJwt(ctx.body.id_token);
      if (c.sid) stats.last_sid = c.sid;
    } catch { /* ignore */ }
    if (tamper && !PRE_MODES.has(tamper.mode) && tamper.grant === grantType) {
      const { mode } = tamper;
      tamper.times -= 1;
      if (tamper.times <= 0) tamper = null;
      const clientId = ctx.oidc.client?.clientId;
      ctx.body = { ...ctx.body, id_token: await tamperIdToken(mode, ctx.body.id_token, clientById.get(clientId)) };
      log('tamper', mode, grantType);
    }
  }
  return undefined;
}

// ----------------------------------------------------------- interactions --

async function handleInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let accountId = session?.accountId;
  const result = {};
  if (prompt.name === 'login' || !accountId) {
    accountId = currentSub;
    result.login = { accountId, remember: true };
  }
  let grant;
  if (details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (params.scope) grant.addOIDCScope(params.scope);
  const pd = prompt.details || {};
  if (pd.missingOIDCScope) grant.addOIDCScope(pd.missingOIDCScope.join(' '));
  if (pd.missingOIDCClaims) grant.addOIDCClaims(pd.missingOIDCClaims);
  if (pd.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(pd.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  result.consent = { grantId };
  log('interaction', details.uid, prompt.name, accountId);
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// -------------------------------------------------------------- controls --

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

async function readJson(req) {
  const raw = await readRaw(req);
  return raw ? JSON.parse(raw) : {};
}

const TAMPER_MODES = new Set(['wrong_aud', 'wrong_iss', 'expired', 'future_iat', 'wrong_nonce',
  'no_nonce', 'alg_none', 'unknown_key', 'hs256', 'hang', 'error', 'refresh_invalid_grant', 'resign',
  'iat_ahead_30s']);

async function mintLogoutToken(body) {
  const client = clientById.get(body.client_id);
  if (!client) throw Object.assign(new Error(`unknown client_id ${body.client_id}`), { status: 400 });
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    aud: client.client_id,
    iat: now,
    exp: now + 120,
    jti: crypto.randomBytes(16).toString('base64url'),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  };
  if (body.sub !== undefined) claims.sub = body.sub;
  if (body.sid !== undefined) claims.sid = body.sid;
  Object.assign(claims, body.overrides || {});
  for (const name of body.remove || []) delete claims[name];
  if (body.alg === 'none') {
    return `${b64json({ alg: 'none', typ: 'logout+jwt' })}.${b64json(claims)}.`;
  }
  const jwk = body.key === 'rogue' ? await getRogueKey() : currentSigningJwk();
  const typ = body.typ === undefined ? 'logout+jwt' : body.typ;
  return signJwt(claims, { alg: 'RS256', kid: jwk.kid, typ }, await privateKeyFor(jwk));
}

// Ends every provider session of `sub` the way end_session (with logout=yes)
// does: client.backchannelLogout(sub, sid) for each client of the session,
// then revokes the grants and destroys the session.
async function backchannelFor(sub) {
  const results = [];
  for (const { id, payload } of sessionsOf(sub)) {
    const auths = payload.authorizations || {};
    await Promise.all(Object.entries(auths).map(async ([clientId, auth]) => {
      const client = await provider.Client.find(clientId);
      if (!client) return;
      if (client.backchannelLogoutUri) {
        const mark = backchannelStatuses.length;
        const r = { client_id: clientId, sid: auth.sid, uri: client.backchannelLogoutUri };
        try {
          await client.backchannelLogout(sub, auth.sid);
          r.ok = true;
        } catch (err) {
          r.ok = false;
          r.error = err.message;
        }
        const st = backchannelStatuses.slice(mark).find((s) => s.url === new URL(client.backchannelLogoutUri).href);
        r.status = err2status(r, st);
        results.push(r);
      }
      if (auth.grantId && !auth.persistsLogout) {
        const grant = await provider.Grant.find(auth.grantId);
        if (grant) await grant.destroy();
        for (const model of GRANTABLE) await new FixtureAdapter(model).revokeByGrantId(auth.grantId);
      }
    }));
    await new FixtureAdapter('Session').destroy(id);
  }
  return { sent: results.length, results };
}

function err2status(r, st) {
  if (st) return st.status;
  const m = /got: (\d{3})/.exec(r.error || '');
  return m ? Number(m[1]) : 0;
}

// sids are per client and per provider session; without client_id the
// first configured client is meant (the usual single-client test).
function latestSid(sub, clientId = clients[0]?.client_id) {
  const list = sessionsOf(sub);
  for (let i = list.length - 1; i >= 0; i -= 1) {
    const auths = list[i].payload.authorizations || {};
    if (auths[clientId]?.sid) return auths[clientId].sid;
  }
  return null;
}

async function handleControl(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  const body = req.method === 'POST' ? await readJson(req) : {};
  switch (route) {
    case 'POST /test/user': {
      if (!body.sub) return sendJson(res, 400, { error: 'sub required' });
      const user = putUser(body);
      currentSub = user.sub;
      return sendJson(res, 200, { ok: true, user });
    }
    case 'POST /test/tamper': {
      if (!TAMPER_MODES.has(body.mode)) return sendJson(res, 400, { error: `unknown mode ${body.mode}` });
      tamper = { mode: body.mode, grant: body.grant || 'authorization_code', times: Number(body.times || 1) };
      return sendJson(res, 200, { ok: true, tamper });
    }
    case 'POST /test/rotate': {
      const kid = `k${rsaKeys.length + 1}`;
      rsaKeys.unshift(await rsaJwk(kid));
      install();
      return sendJson(res, 200, { ok: true, kid, kids: [...rsaKeys.map((k) => k.kid), ecKey.kid] });
    }
    case 'POST /test/hang-jwks':
      hangJwks = body.on !== false;
      return sendJson(res, 200, { ok: true, on: hangJwks });
    case 'POST /test/discovery':
      discoveryOverrides = body.overrides || null;
      return sendJson(res, 200, { ok: true, overrides: discoveryOverrides });
    case 'POST /test/hang-discovery':
      hangDiscovery = body.on !== false;
      return sendJson(res, 200, { ok: true, on: hangDiscovery });
    case 'POST /test/logout-token':
      return sendJson(res, 200, { token: await mintLogoutToken(body) });
    case 'POST /test/backchannel':
      if (!body.sub) return sendJson(res, 400, { error: 'sub required' });
      return sendJson(res, 200, await backchannelFor(body.sub));
    case 'GET /test/stats':
      return sendJson(res, 200, stats);
    case 'POST /test/reset-stats':
      stats.token_requests.authorization_code = 0;
      stats.token_requests.refresh_token = 0;
      stats.userinfo_requests = 0;
      return sendJson(res, 200, stats);
    case 'GET /test/sid': {
      const sub = url.searchParams.get('sub') || currentSub;
      return sendJson(res, 200, { sub, sid: latestSid(sub, url.searchParams.get('client_id') || undefined) });
    }
    case 'GET /test/sessions': {
      const sub = url.searchParams.get('sub') || currentSub;
      return sendJson(res, 200, { sub, sessions: sessionsOf(sub).map((s) => ({ uid: s.payload.uid, authorizations: s.payload.authorizations })) });
    }
    default:
      return sendJson(res, 404, { error: `no control ${route}` });
  }
}

// ---------------------------------------------------------------- server --

function hangForever(res) {
  hanging.add(res);
  res.on('close', () => hanging.delete(res));
}

async function onRequest(req, res) {
  const url = new URL(req.url, 'http://fixture');
  try {
    if (url.pathname.startsWith('/test/')) return await handleControl(req, res, url);
    if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) return await handleInteraction(req, res);
    if (hangJwks && url.pathname === '/jwks') return hangForever(res);
    if (hangDiscovery && url.pathname === '/.well-known/openid-configuration') return hangForever(res);
    if (discoveryOverrides && req.method === 'GET' && url.pathname === '/.well-known/openid-configuration'
        && !url.searchParams.has('fixture-real')) {
      const real = await (await fetch(`${issuer}/.well-known/openid-configuration?fixture-real=1`)).json();
      return sendJson(res, 200, { ...real, ...discoveryOverrides });
    }
    // The key set also answers at /jwks-moved (for a discovery document that moves it).
    if (url.pathname === '/jwks-moved') req.url = '/jwks';
    return providerHandler(req, res);
  } catch (err) {
    console.error('[oidc-fixture] error', err);
    if (!res.headersSent) sendJson(res, err.status || 500, { error: String(err.message || err) });
    else res.destroy();
  }
  return undefined;
}

const server = http.createServer(onRequest);
server.keepAliveTimeout = 5000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
issuer = `http://localhost:${port}`;

// "localhost" may resolve to ::1 first; serve there too when possible.
const server6 = http.createServer(onRequest);
server6.on('error', (err) => log('no [::1] listener:', err.code));
server6.listen(port, '::1');

install();

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);

function shutdown() {
  for (const res of hanging) res.destroy();
  server.close();
  server6.close();
  server.closeAllConnections?.();
  server6.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (!process.env.OIDC_FIXTURE_IGNORE_STDIN) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}
