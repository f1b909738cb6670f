// A tiny stand-in relying party (same paths as sessiongate's OIDC routes) to
// exercise browser.mjs and provider.mjs together without the proxy.
//
//   node dev-rp.mjs            starts an RP + provider.mjs, runs browser.mjs, exits 0/1
//
// RP routes: GET /app/... (needs a session, else redirects to the provider),
// GET /_sessiongate/oidc/callback, GET /_sessiongate/oidc/logout,
// POST /_sessiongate/oidc/backchannel-logout, GET / (signed-out page).

import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';

const here = path.dirname(fileURLToPath(import.meta.url));
const SECRET = 's3cret-dev-rp-client-secret-0123456789abcdef';

function rnd() {
  return crypto.randomBytes(16).toString('base64url');
}

function cookies(req) {
  return Object.fromEntries((req.headers.cookie || '').split(/;\s*/).filter(Boolean)
    .map((c) => [c.slice(0, c.indexOf('=')), c.slice(c.indexOf('=') + 1)]));
}

export async function startRp() {
  const flows = new Map(); // state -> { verifier, nonce, returnTo }
  const sessions = new Map(); // id -> { claims, idToken }
  const rp = { port: 0, issuer: null, discovery: null, jwks: null, backchannel: [] };

  const server = http.createServer(async (req, res) => {
    const base = `http://127.0.0.1:${rp.port}`;
    const url = new URL(req.url, base);
    const send = (status, headers, body = '') => { res.writeHead(status, headers); res.end(body); };
    try {
      const sess = sessions.get(cookies(req).dev_rp_session);
      if (url.pathname === '/_sessiongate/oidc/callback') {
        const flow = flows.get(url.searchParams.get('state'));
        if (!flow) return send(400, {}, 'unknown state');
        flows.delete(url.searchParams.get('state'));
        const tr = await fetch(rp.discovery.token_endpoint, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`sg:${SECRET}`).toString('base64')}`,
          },
          body: new URLSearchParams({
            grant_type: 'authorization_code', code: url.searchParams.get('code'),
            redirect_uri: `${base}/_sessiongate/oidc/callback`, code_verifier: flow.verifier,
          }),
        });
        const tokens = await tr.json();
        if (!tr.ok) return send(502, {}, JSON.stringify(tokens));
        const { payload } = await jose.jwtVerify(tokens.id_token, rp.jwks, { issuer: rp.issuer, audience: 'sg' });
        if (payload.nonce !== flow.nonce) return send(400, {}, 'nonce');
        const id = rnd();
        sessions.set(id, { claims: payload, idToken: tokens.id_token });
        return send(302, { location: flow.returnTo, 'set-cookie': `dev_rp_session=${id}; Path=/; HttpOnly; SameSite=Lax` });
      }
      if (url.pathname === '/_sessiongate/oidc/logout') {
        const target = new URL(rp.discovery.end_session_endpoint);
        if (sess) target.searchParams.set('id_token_hint', sess.idToken);
        target.searchParams.set('post_logout_redirect_uri', `${base}/`);
        sessions.delete(cookies(req).dev_rp_session);
        return send(302, { location: target.href, 'set-cookie': 'dev_rp_session=; Path=/; Max-Age=0' });
      }
      if (url.pathname === '/_sessiongate/oidc/backchannel-logout' && req.method === 'POST') {
        let raw = '';
        for await (const c of req) raw += c;
        const lt = new URLSearchParams(raw).get('logout_token');
        const { payload } = await jose.jwtVerify(lt, rp.jwks, { issuer: rp.issuer, audience: 'sg', typ: 'logout+jwt' });
        rp.backchannel.push(payload);
        for (const [id, s] of sessions) if (s.claims.sid === payload.sid) sessions.delete(id);
        return send(200, {});
      }
      if (url.pathname.startsWith('/app/')) {
        if (sess) {
          return send(200, { 'content-type': 'text/html' },
            `<!DOCTYPE html><html><body><h1>Hello ${sess.claims.name}</h1><p>${url.search}</p></body></html>`);
        }
        const state = rnd();
        const verifier = rnd() + rnd();
        const nonce = rnd();
        flows.set(state, { verifier, nonce, returnTo: url.href });
        const a = new URL(rp.discovery.authorization_endpoint);
        Object.entries({
          client_id: 'sg', response_type: 'code', scope: 'openid email profile groups',
          redirect_uri: `${base}/_sessiongate/oidc/callback`, state, nonce,
          code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
          code_challenge_method: 'S256',
        }).forEach(([k, v]) => a.searchParams.set(k, v));
        return send(302, { location: a.href });
      }
      if (url.pathname === '/') return send(200, { 'content-type': 'text/html' }, '<p>Signed out of the app.</p>');
      return send(404, {}, 'not found');
    } catch (err) {
      return send(500, {}, String(err.stack || err));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  rp.port = server.address().port;
  rp.server = server;
  return rp;
}

function runNode(script, arg) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, script), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

export async function runBrowserCheck() {
  const rp = await startRp();
  const base = `http://127.0.0.1:${rp.port}`;
  const op = spawn(process.execPath, [path.join(here, 'provider.mjs'), JSON.stringify({
    clients: [{
      client_id: 'sg', client_secret: SECRET,
      redirect_uris: [`${base}/_sessiongate/oidc/callback`],
      post_logout_redirect_uris: [`${base}/`],
      backchannel_logout_uri: `${base}/_sessiongate/oidc/backchannel-logout`,
    }],
  })], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const line = await new Promise((r) => readline.createInterface({ input: op.stdout }).once('line', r));
    rp.issuer = JSON.parse(line).issuer;
    rp.discovery = await (await fetch(`${rp.issuer}/.well-known/openid-configuration`)).json();
    rp.jwks = jose.createRemoteJWKSet(new URL(rp.discovery.jwks_uri));
    const { code, out } = await runNode('browser.mjs', {
      url: `${base}/app/`,
      expect_text: 'Alice Example',
      logout_url: `${base}/_sessiongate/oidc/logout`,
      screenshots: path.join(process.env.TMPDIR || '/tmp', 'sg-oidc-dev-rp-shots'),
      two_tabs: true,
    });
    const result = JSON.parse(out.trim().split('\n').pop());
    result.backchannel_received = rp.backchannel.length;
    if (code !== 0 || !result.ok) throw new Error(`browser.mjs failed: ${out}`);
    if (rp.backchannel.length < 1) throw new Error('no back-channel logout received on logout');
    return result;
  } finally {
    op.kill('SIGTERM');
    rp.server.close();
    rp.server.closeAllConnections();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    console.log(JSON.stringify(await runBrowserCheck()));
    process.exit(0);
  } catch (err) {
    console.log(String(err.message || err));
    process.exit(1);
  }
}
