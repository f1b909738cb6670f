// Headless-browser driver for sessiongate's OIDC tests (Debian's Chromium
// driven with puppeteer-core over CDP).
//
// Usage: node browser.mjs '{"url":"http://127.0.0.1:P/app/","expect_text":"Alice Example",
//          "logout_url":"http://127.0.0.1:P/_sessiongate/oidc/logout",
//          "screenshots":"/tmp/dir","two_tabs":true}'
// Optional keys: "chromium" (path, default /usr/bin/chromium or $CHROMIUM),
//   "timeout_ms" (per navigation, default 20000),
//   "expect_provider_login" (default true: after logout the provider must
//   sign the user in again, i.e. the flow passes its /interaction/ page),
//   "cross_site_from" (a page of another origin: the sign-out is started
//   there by a link, must be asked about, and is confirmed with #sign-out).
// Prints one JSON line: {"ok":true,"steps":[...]} or
// {"ok":false,"error":"...","steps":[...],"screenshots":[...]} (exit code 1).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const opts = JSON.parse(process.argv[2] || '{}');
const TIMEOUT = Number(opts.timeout_ms || 20000);
const executablePath = opts.chromium || process.env.CHROMIUM || '/usr/bin/chromium';
const steps = [];
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-chromium-'));
let browser;

function fail(msg) {
  throw new Error(msg);
}

function hopsOf(response) {
  const req = response.request();
  return [...req.redirectChain(), req].map((r) => {
    const resp = r.response();
    return {
      url: r.url(),
      status: resp ? resp.status() : null,
      location: resp ? (resp.headers().location ?? null) : null,
    };
  });
}

// Opens `target` in `page`, waits for the whole redirect dance to settle and
// checks the final page: same URL as requested and the expected text.
async function visit(page, target, label) {
  const response = await page.goto(target, { waitUntil: 'load', timeout: TIMEOUT });
  if (!response) fail(`${label}: no response for ${target}`);
  const hops = hopsOf(response);
  const finalUrl = page.url();
  const text = await page.evaluate(() => document.body?.innerText ?? '');
  if (finalUrl !== target) fail(`${label}: ended on ${finalUrl}, expected ${target} (hops ${JSON.stringify(hops)})`);
  if (response.status() !== 200) fail(`${label}: final status ${response.status()}`);
  if (opts.expect_text && !text.includes(opts.expect_text)) {
    fail(`${label}: final page lacks ${JSON.stringify(opts.expect_text)}: ${JSON.stringify(text.slice(0, 300))}`);
  }
  return { hops, finalUrl };
}

function viaProvider(hops, target) {
  const origin = new URL(target).origin;
  return hops.some((h) => new URL(h.url).origin !== origin);
}

async function screenshotAll() {
  const out = [];
  if (!browser || !opts.screenshots) return out;
  try {
    fs.mkdirSync(opts.screenshots, { recursive: true });
    const pages = await browser.pages();
    let i = 0;
    for (const p of pages) {
      i += 1;
      const file = path.join(opts.screenshots, `page-${i}.png`);
      try {
        await p.screenshot({ path: file, fullPage: true });
        out.push(file);
        fs.writeFileSync(path.join(opts.screenshots, `page-${i}.txt`), `${p.url()}\n\n${await p.content()}`);
      } catch { /* page may be gone */ }
    }
  } catch { /* best effort */ }
  return out;
}

async function main() {
  if (!opts.url) fail('url required');
  browser = await puppeteer.launch({
    executablePath,
    headless: true,
    userDataDir,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    protocolTimeout: TIMEOUT * 2,
  });

  // (a) one tab: proxy -> provider -> proxy callback -> original URL.
  const [first] = await browser.pages();
  const page = first || await browser.newPage();
  const a = await visit(page, opts.url, 'login');
  if (!viaProvider(a.hops, opts.url)) fail(`login: never went through the provider: ${JSON.stringify(a.hops)}`);
  steps.push({ step: 'login', hops: a.hops.length, final: a.finalUrl });

  // (b) fresh cookie jar (new browser context), two tabs at once.
  let ctx = browser.defaultBrowserContext();
  let logoutPage = page;
  if (opts.two_tabs) {
    ctx = await browser.createBrowserContext();
    const [p1, p2] = await Promise.all([ctx.newPage(), ctx.newPage()]);
    const u2 = new URL(opts.url);
    u2.searchParams.set('tab', '2');
    const [r1, r2] = await Promise.all([visit(p1, opts.url, 'tab 1'), visit(p2, u2.href, 'tab 2')]);
    steps.push({ step: 'two_tabs', tab1: r1.finalUrl, tab2: r2.finalUrl, hops: [r1.hops.length, r2.hops.length] });
    await p2.close();
    logoutPage = p1;
  }

  // (c) logout, confirm at the provider, then the app must send us back to it.
  if (opts.logout_url) {
    let lr;
    if (opts.cross_site_from) {
      // A link on another site's page: the proxy must ask, and sign out only on its button.
      await logoutPage.goto(opts.cross_site_from, { waitUntil: 'load', timeout: TIMEOUT });
      const asked = logoutPage.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT });
      await logoutPage.evaluate((u) => { window.location.href = u; }, opts.logout_url);
      await asked;
      if (!(await logoutPage.$('#sign-out'))) {
        fail(`cross-site sign-out: not asked first: ${logoutPage.url()} ${(await logoutPage.content()).slice(0, 300)}`);
      }
      const still = await logoutPage.evaluate(
        async (u) => (await fetch(u, { redirect: 'manual', credentials: 'same-origin' })).status,
        opts.url,
      );
      if (still !== 200) fail(`cross-site sign-out: signed out before the button (${still})`);
      steps.push({ step: 'cross_site_logout_asked', still_signed_in: still });
      [lr] = await Promise.all([
        logoutPage.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT }),
        logoutPage.click('#sign-out'),
      ]);
    } else {
      lr = await logoutPage.goto(opts.logout_url, { waitUntil: 'load', timeout: TIMEOUT });
    }
    const lhops = lr ? hopsOf(lr) : [];
    let confirmed = false;
    if (await logoutPage.$('#confirm')) {
      await Promise.all([
        logoutPage.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT }),
        logoutPage.click('#confirm'),
      ]);
      confirmed = true;
    }
    steps.push({ step: 'logout', hops: lhops.length, confirmed, final: logoutPage.url() });

    const again = await visit(logoutPage, opts.url, 'after logout');
    const firstHop = again.hops[0];
    const loc = firstHop.location ? new URL(firstHop.location, firstHop.url) : null;
    if (!(firstHop.status >= 300 && firstHop.status < 400) || !loc
      || loc.origin === new URL(opts.url).origin) {
      fail(`after logout: the app did not redirect to the provider first: ${JSON.stringify(again.hops)}`);
    }
    const providerLogin = again.hops.some((h) => new URL(h.url).pathname.startsWith('/interaction/'));
    if (opts.expect_provider_login !== false && !providerLogin) {
      fail(`after logout: the provider session survived (no new sign-in): ${JSON.stringify(again.hops)}`);
    }
    steps.push({ step: 'relogin', first_hop: firstHop.status, to: loc.origin, provider_login: providerLogin });
  }
}

let code = 0;
try {
  await main();
  console.log(JSON.stringify({ ok: true, steps }));
} catch (err) {
  const shots = await screenshotAll();
  console.log(JSON.stringify({ ok: false, error: String(err?.message || err), steps, screenshots: shots }));
  code = 1;
} finally {
  try { await browser?.close(); } catch { /* ignore */ }
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
