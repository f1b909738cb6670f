// Self-test of the OIDC provider fixture: drives provider.mjs with plain
// fetch acting as the relying party. Run: npm ci && node smoke.mjs
// Optional: node smoke.mjs --browser  (also runs browser.mjs against dev-rp.mjs)

import { spawn } from 'node:child_process';
import http from 'node:http';
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';

const here = path.dirname(fileURLToPath(import.meta.url));
const SECRET = 's3cret-smoke-test-client-secret-0123456789';
const results = [];
let passed = 0;
let failed = 0;

async function step(name, fn) {
  try {
    await fn();
    passed += 1;
    results.push(`ok   ${name}`);
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    results.push(`FAIL ${name}: ${err.stack || err}`);
    console.log(`FAIL ${name}: ${err.stack || err}`);
  }
}

// -- a tiny back-channel logout receiver --------------------------------
const received = [];
let bcStatus = 200;
const bc = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (c) => { raw += c; });
  req.on('end', () => {
    received.push({ path: req.url, ctype: req.headers['content-type'], body: new URLSearchParams(raw) });
    res.writeHead(bcStatus);
    res.end();
  });
});
await new Promise((r) => bc.listen(0, '127.0.0.1', r));
const bcPort = bc.address().port;
const REDIRECT = 'http://127.0.0.1:9/_sessiongate/oidc/callback'; // nobody listens

// -- provider ---------------------------------------------------------------
export async function startProvider(config, { cwd = here } = {}) {
  const child = spawn(process.execPath, [path.join(cwd, 'provider.mjs'), JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rl = readline.createInterface({ input: child.stdout });
  const line = await new Promise((resolve, reject) => {
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`provider exited ${code}`)));
  });
  return { child, ...JSON.parse(line) };
}

const op = await startProvider({
  clients: [
    {
      client_id: 'sg',
      client_secret: SECRET,
      redirect_uris: [REDIRECT],
      post_logout_redirect_uris: ['http://127.0.0.1:9/'],
      backchannel_logout_uri: `http://127.0.0.1:${bcPort}/_sessiongate/oidc/backchannel-logout`,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'sg-post',
      client_secret: `${SECRET}-post`,
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  access_token_ttl: 60,
  id_token_ttl: 300,
});
const ISS = op.issuer;
console.log('provider ready', { issuer: op.issuer, port: op.port });

async function ctl(p, body) {
  const res = await fetch(`${ISS}/test/${p}`, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`control ${p}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

// Minimal cookie jar for the user agent side (provider cookies only).
class Jar {
  constructor() { this.c = new Map(); }
  take(res) {
    for (const sc of res.headers.getSetCookie()) {
      const [nv] = sc.split(';');
      const i = nv.indexOf('=');
      const name = nv.slice(0, i);
      const value = nv.slice(i + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(sc) || value === '') this.c.delete(name);
      else this.c.set(name, value);
    }
  }
  header() { return [...this.c].map(([k, v]) => `${k}=${v}`).join('; '); }
}

let discovery;
let JWKS;

// Follows the browser side of the authorization request until the redirect
// back to the client; returns the callback URL.
async function authorize(jar, { clientId = 'sg', nonce, state, verifier, extra = {} }) {
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const u = new URL(discovery.authorization_endpoint);
  Object.entries({
    client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid email profile groups',
    state, nonce, code_challenge: challenge, code_challenge_method: 'S256', ...extra,
  }).forEach(([k, v]) => v !== undefined && u.searchParams.set(k, v));
  let url = u.href;
  for (let i = 0; i < 10; i += 1) {
    if (url.startsWith(REDIRECT)) return new URL(url);
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.take(res);
    const loc = res.headers.get('location');
    if (!loc) throw new Error(`no redirect from ${url}: ${res.status} ${await res.text()}`);
    url = new URL(loc, url).href;
  }
  throw new Error('too many redirects');
}

function basic(id, secret) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function token(params, { clientId = 'sg', secret = SECRET, post = false } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const body = new URLSearchParams(params);
  if (post) { body.set('client_id', clientId); body.set('client_secret', secret); } else headers.authorization = basic(clientId, secret);
  const res = await fetch(discovery.token_endpoint, { method: 'POST', headers, body });
  return { status: res.status, json: await res.json() };
}

async function codeFlow(jar, opts = {}) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const nonce = crypto.randomBytes(8).toString('hex');
  const state = crypto.randomBytes(8).toString('hex');
  const cb = await authorize(jar, { ...opts, nonce, state, verifier });
  assert.equal(cb.searchParams.get('state'), state);
  assert.equal(cb.searchParams.get('iss'), ISS);
  const code = cb.searchParams.get('code');
  assert.ok(code, `no code in ${cb}`);
  const tr = await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }, opts.tokenOpts);
  return { ...tr, nonce, code };
}

async function verifyId(idToken, { nonce, aud = 'sg' } = {}) {
  const { payload, protectedHeader } = await jose.jwtVerify(idToken, JWKS, { issuer: ISS, audience: aud, algorithms: ['RS256'] });
  if (nonce) assert.equal(payload.nonce, nonce);
  return { payload, protectedHeader };
}

try {
  await step('discovery', async () => {
    discovery = await (await fetch(`${ISS}/.well-known/openid-configuration`)).json();
    assert.equal(discovery.issuer, ISS);
    assert.ok(discovery.end_session_endpoint);
    assert.equal(discovery.backchannel_logout_supported, true);
    assert.equal(discovery.backchannel_logout_session_supported, true);
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
    assert.ok(discovery.scopes_supported.includes('groups'));
    assert.ok(discovery.id_token_signing_alg_values_supported.includes('RS256'));
    JWKS = jose.createRemoteJWKSet(new URL(discovery.jwks_uri), { cacheMaxAge: 0, cooldownDuration: 0 });
    const jwks = await (await fetch(discovery.jwks_uri)).json();
    assert.deepEqual(jwks.keys.map((k) => k.kid), ['k1', 'e1']);
    assert.ok(jwks.keys.every((k) => !k.d), 'private parts leaked');
  });

  const jar = new Jar();
  let rt;
  let firstSid;
  await step('authorization code + PKCE, claims in ID token', async () => {
    const { status, json, nonce } = await codeFlow(jar);
    assert.equal(status, 200, JSON.stringify(json));
    const { payload, protectedHeader } = await verifyId(json.id_token, { nonce });
    assert.equal(protectedHeader.kid, 'k1');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.email, 'alice@example.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'Alice Example');
    assert.deepEqual(payload.groups, ['staff']);
    assert.ok(payload.sid);
    assert.ok(payload.exp - payload.iat === 300, 'id_token_ttl');
    assert.equal(json.expires_in, 60);
    assert.ok(json.refresh_token, 'refresh token issued without offline_access');
    rt = json.refresh_token;
    firstSid = payload.sid;
    console.log('provider cookies:', [...jar.c.keys()].join(', '));
  });

  await step('PKCE required', async () => {
    const u = new URL(discovery.authorization_endpoint);
    Object.entries({ client_id: 'sg', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', state: 'x' })
      .forEach(([k, v]) => u.searchParams.set(k, v));
    const res = await fetch(u, { redirect: 'manual' });
    const loc = new URL(res.headers.get('location'));
    assert.equal(loc.searchParams.get('error'), 'invalid_request');
  });

  await step('sid and stats', async () => {
    const s = await ctl('sid?sub=alice');
    assert.equal(s.sid, firstSid);
    const st = await ctl('stats');
    assert.equal(st.token_requests.authorization_code, 1);
    assert.equal(st.last_sid, firstSid);
  });

  await step('refresh_token grant (rotating)', async () => {
    const { status, json } = await token({ grant_type: 'refresh_token', refresh_token: rt });
    assert.equal(status, 200, JSON.stringify(json));
    assert.ok(json.access_token);
    assert.ok(json.refresh_token && json.refresh_token !== rt, 'rotated');
    const { payload } = await verifyId(json.id_token);
    assert.equal(payload.sub, 'alice');
    rt = json.refresh_token;
    assert.equal((await ctl('stats')).token_requests.refresh_token, 1);
  });

  await step('client_secret_post client', async () => {
    const { status, json } = await codeFlow(jar, { clientId: 'sg-post', tokenOpts: { clientId: 'sg-post', secret: `${SECRET}-post`, post: true } });
    assert.equal(status, 200, JSON.stringify(json));
    await verifyId(json.id_token, { aud: 'sg-post' });
  });

  const expectFail = async (tok, re) => {
    await assert.rejects(verifyId(tok), re);
  };
  const tamperCases = {
    wrong_aud: async (t) => { assert.equal(jose.decodeJwt(t).aud, 'someone-else'); await expectFail(t, /aud/); },
    wrong_iss: async (t) => { assert.notEqual(jose.decodeJwt(t).iss, ISS); await expectFail(t, /iss/); },
    expired: async (t) => { const c = jose.decodeJwt(t); assert.ok(c.exp < Date.now() / 1000 - 3000); await expectFail(t, /exp/); },
    future_iat: async (t) => { const c = jose.decodeJwt(t); assert.ok(c.iat > Date.now() / 1000 + 3000); await verifyId(t); },
    wrong_nonce: async (t, nonce) => { const { payload } = await verifyId(t); assert.notEqual(payload.nonce, nonce); },
    no_nonce: async (t) => { const { payload } = await verifyId(t); assert.equal(payload.nonce, undefined); },
    alg_none: async (t) => { assert.equal(jose.decodeProtectedHeader(t).alg, 'none'); assert.ok(t.endsWith('.')); await expectFail(t, /alg|Unsupported|JWS/i); },
    unknown_key: async (t) => { assert.equal(jose.decodeProtectedHeader(t).kid, 'rogue'); await expectFail(t, /no applicable key|matching/i); },
    hs256: async (t) => {
      const h = jose.decodeProtectedHeader(t);
      assert.equal(h.alg, 'HS256'); assert.equal(h.kid, 'k1');
      await jose.jwtVerify(t, new TextEncoder().encode(SECRET));
      await expectFail(t, /alg|Unsupported|key/i);
    },
  };
  for (const [mode, check] of Object.entries(tamperCases)) {
    await step(`tamper ${mode}`, async () => {
      await ctl('tamper', { mode });
      const { status, json, nonce } = await codeFlow(jar);
      assert.equal(status, 200, JSON.stringify(json));
      await check(json.id_token, nonce);
      // one-shot: the next exchange is clean again
      const again = await codeFlow(jar);
      await verifyId(again.json.id_token, { nonce: again.nonce });
    });
  }

  await step('tamper on refresh_token grant only when asked', async () => {
    await ctl('tamper', { mode: 'wrong_aud', grant: 'refresh_token' });
    const a = await codeFlow(jar);
    await verifyId(a.json.id_token, { nonce: a.nonce });
    const r = await token({ grant_type: 'refresh_token', refresh_token: a.json.refresh_token });
    assert.equal(jose.decodeJwt(r.json.id_token).aud, 'someone-else');
  });

  await step('tamper error', async () => {
    await ctl('tamper', { mode: 'error' });
    const r = await codeFlow(jar);
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
  });

  await step('tamper refresh_invalid_grant', async () => {
    await ctl('tamper', { mode: 'refresh_invalid_grant' });
    const a = await codeFlow(jar); // authorization_code is unaffected
    assert.equal(a.status, 200);
    const r = await token({ grant_type: 'refresh_token', refresh_token: a.json.refresh_token });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
    const r2 = await token({ grant_type: 'refresh_token', refresh_token: a.json.refresh_token });
    assert.equal(r2.status, 200, 'one-shot, refresh token untouched');
  });

  await step('tamper hang', async () => {
    await ctl('tamper', { mode: 'hang' });
    await assert.rejects(codeFlowWithTimeout(jar, 1500), /timeout|abort/i);
    const a = await codeFlow(jar);
    assert.equal(a.status, 200);
  });

  await step('hang-jwks / hang-discovery', async () => {
    await ctl('hang-jwks', { on: true });
    await assert.rejects(fetch(discovery.jwks_uri, { signal: AbortSignal.timeout(800) }), /timeout|abort/i);
    await ctl('hang-jwks', { on: false });
    assert.equal((await fetch(discovery.jwks_uri)).status, 200);
    await ctl('hang-discovery', { on: true });
    await assert.rejects(fetch(`${ISS}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(800) }), /timeout|abort/i);
    await ctl('hang-discovery', { on: false });
    assert.equal((await fetch(`${ISS}/.well-known/openid-configuration`)).status, 200);
  });

  await step('rotate keeps sessions, grants and refresh tokens', async () => {
    const r = await ctl('rotate', {});
    assert.equal(r.kid, 'k2');
    const jwks = await (await fetch(discovery.jwks_uri)).json();
    assert.deepEqual(jwks.keys.map((k) => k.kid), ['k2', 'k1', 'e1']);
    const rr = await token({ grant_type: 'refresh_token', refresh_token: rt });
    assert.equal(rr.status, 200, JSON.stringify(rr.json));
    rt = rr.json.refresh_token;
    assert.equal(jose.decodeProtectedHeader(rr.json.id_token).kid, 'k2');
    const before = (await ctl('sid?sub=alice')).sid;
    const a = await codeFlow(jar); // existing provider session: no new login
    const { payload, protectedHeader } = await verifyId(a.json.id_token, { nonce: a.nonce });
    assert.equal(protectedHeader.kid, 'k2');
    assert.equal(payload.sid, before);
    assert.equal((await ctl('rotate', {})).kid, 'k3');
  });

  await step('logout-token control', async () => {
    const { token: t } = await ctl('logout-token', { client_id: 'sg', sub: 'alice', sid: 'abc' });
    const { payload, protectedHeader } = await jose.jwtVerify(t, JWKS, { issuer: ISS, audience: 'sg', typ: 'logout+jwt' });
    assert.equal(protectedHeader.kid, 'k3');
    assert.equal(payload.sid, 'abc');
    assert.ok(payload.jti && payload.iat);
    assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
    const o = await ctl('logout-token', { client_id: 'sg', sub: 'alice', overrides: { nonce: 'n' }, remove: ['events'] });
    const c = jose.decodeJwt(o.token);
    assert.equal(c.nonce, 'n'); assert.equal(c.events, undefined);
    const rogue = await ctl('logout-token', { client_id: 'sg', sub: 'alice', key: 'rogue' });
    assert.equal(jose.decodeProtectedHeader(rogue.token).kid, 'rogue');
    const none = await ctl('logout-token', { client_id: 'sg', sub: 'alice', alg: 'none' });
    assert.equal(jose.decodeProtectedHeader(none.token).alg, 'none');
  });

  await step('backchannel control', async () => {
    received.length = 0;
    const sid = (await ctl('sid?sub=alice&client_id=sg')).sid;
    const r = await ctl('backchannel', { sub: 'alice' });
    assert.ok(r.sent >= 1, JSON.stringify(r));
    assert.ok(r.results.every((x) => x.status === 200), JSON.stringify(r));
    assert.equal(received.length, r.sent);
    const lt = received[0].body.get('logout_token');
    const { payload, protectedHeader } = await jose.jwtVerify(lt, JWKS, { issuer: ISS, audience: 'sg', typ: 'logout+jwt' });
    assert.equal(protectedHeader.kid, 'k3');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.sid, sid);
    assert.ok(payload.events['http://schemas.openid.net/event/backchannel-logout']);
    // provider session and grants are gone
    assert.equal((await ctl('sid?sub=alice')).sid, null);
    const rr = await token({ grant_type: 'refresh_token', refresh_token: rt });
    assert.equal(rr.status, 400);
    // a client answering 500 is reported
    await codeFlow(new Jar());
    bcStatus = 500;
    const r2 = await ctl('backchannel', { sub: 'alice' });
    bcStatus = 200;
    assert.equal(r2.results[0].status, 500, JSON.stringify(r2));
  });

  await step('user control + RP-initiated logout with back-channel', async () => {
    await ctl('user', { sub: 'bob', email: 'bob@example.com', name: 'Bob Builder', groups: ['ops', 'dev'] });
    const j = new Jar();
    const a = await codeFlow(j);
    const { payload } = await verifyId(a.json.id_token, { nonce: a.nonce });
    assert.equal(payload.sub, 'bob');
    assert.deepEqual(payload.groups, ['ops', 'dev']);
    received.length = 0;
    const u = new URL(discovery.end_session_endpoint);
    u.searchParams.set('id_token_hint', a.json.id_token);
    u.searchParams.set('post_logout_redirect_uri', 'http://127.0.0.1:9/');
    u.searchParams.set('state', 'st');
    let res = await fetch(u, { headers: { cookie: j.header() } });
    j.take(res);
    const html = await res.text();
    assert.match(html, /id="confirm"/);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)[1];
    const action = /action="([^"]+)"/.exec(html)[1];
    res = await fetch(action, {
      method: 'POST', redirect: 'manual',
      headers: { cookie: j.header(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ xsrf, logout: 'yes' }),
    });
    j.take(res);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), 'http://127.0.0.1:9/?state=st');
    assert.equal(received.length, 1);
    assert.equal(jose.decodeJwt(received[0].body.get('logout_token')).sub, 'bob');
    assert.equal((await ctl('sid?sub=bob')).sid, null);
    // without post_logout_redirect_uri: the success page
    const ok = await fetch(`${ISS}/session/end/success`);
    assert.match(await ok.text(), /Signed out at the provider\./);
  });

  await step('stdin close ends the provider', async () => {
    const p2 = await startProvider({ clients: [] });
    const exited = new Promise((r) => p2.child.once('exit', r));
    p2.child.stdin.end();
    await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error('still running')), 3000))]);
  });

  if (process.argv.includes('--browser')) {
    await step('browser.mjs against dev-rp.mjs', async () => {
      const { runBrowserCheck } = await import('./dev-rp.mjs');
      await runBrowserCheck(op.issuer);
    });
  }
} finally {
  op.child.kill('SIGTERM');
  bc.close();
}

async function codeFlowWithTimeout(jar, ms) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const cb = await authorize(jar, { nonce: 'n', state: 's', verifier });
  const res = await fetch(discovery.token_endpoint, {
    method: 'POST',
    signal: AbortSignal.timeout(ms),
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('sg', SECRET) },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: cb.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier }),
  });
  return res.json();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
