// The dashboard in a real headless Chromium, over a store a real monitor
// filled: a lab whose device goes off and on again, seven rounds,
// then `mitmwatch serve`. Asserts the page shows the off period and that
// clicking an event opens the real-vs-forged certificate diff.
// Needs root (the lab); exits 77 (skipped) without it.
// MW_SCREENSHOTS=DIR also saves dashboard.png, certdiff.png and report.png there.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BIN = process.env.MW_BINARY;
if (!BIN) { console.error('MW_BINARY must name build/mitmwatch'); process.exit(2); }
if (process.getuid() !== 0) { console.log('skipped: the lab needs root'); process.exit(77); }

const lab = `y${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), 'mw-dashboard-'));
const db = join(dir, 'm.db');
let server = null;
let browser = null;

function mw(args, { check = true, timeout = 180000 } = {}) {
  const r = spawnSync(BIN, args, { encoding: 'utf8', timeout });
  if (check && r.status !== 0) throw new Error(`mitmwatch ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

function cleanup() {
  if (server) server.kill('SIGKILL');
  spawnSync(BIN, ['lab', 'down', '--name', lab], { timeout: 60000 });
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => { cleanup(); process.exit(1); });
process.on('SIGTERM', () => { cleanup(); process.exit(1); });

async function main() {
  writeFileSync(join(dir, 'lab.toml'), `name = "${lab}"
routers = 4
device_after = 2
[[vantages]]
name = "outside"
attach = 1
[[prefixes]]
name = "core"
cidr = "10.72.0.0/24"
servers = 10
untrusted = 0
attach = 4
`);
  mw(['lab', 'up', '--config', join(dir, 'lab.toml')]);
  writeFileSync(join(dir, 'targets.txt'), Array.from({ length: 10 }, (_, i) => `10.72.0.${i + 1}:443`).join('\n') + '\n');
  // Rounds 1-4 on, 5-6 off, 7 on: the monitor's --on-round hook switches the
  // device after rounds 4 and 6, before the next round starts, however long
  // a round took (round 1 also traces).
  const device = `${BIN} lab device --name ${lab}`;
  const switcher = `case $(sed -n 's/.*"round":\\([0-9]*\\).*/\\1/p') in 4) ${device} off;; 6) ${device} on;; esac`;
  const ca = `/run/mitmwatch-lab/${lab}/public-root.pem`;
  mw(['lab', 'exec', '--name', lab, 'outside', '--', BIN, 'monitor', '--db', db, '--vantage', 'outside', '--name', 'lab',
      '--every', '1s', '--rounds', '7', '--trace', '-q', '--on-round', switcher, '--', '--allow-private', '--ca-file', ca,
      '--sni', 'facebook.com', '-i', join(dir, 'targets.txt')]);

  server = spawn(BIN, ['serve', '--db', db, '--ca-file', ca, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20000);
    server.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/serve: (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    server.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });

  // The time series: seven rounds, the device off in rounds 5 and 6.
  const shares = await page.evaluate(() => window.mitmwatchChart.data.datasets.map((d) => d.data.map((p) => p.y)));
  assert.deepEqual(shares, [[100, 100, 100, 100, 0, 0, 100]]);
  const off = await page.locator('#off-periods li.off-period').allTextContents();
  assert.equal(off.length, 1, `one off period: ${off}`);
  assert.match(off[0], /outside: from .* to .* \(2 rounds\)/);

  // The traces placed the device: one hop pair, between routers 2 and 3.
  const hops = await page.locator('#hops tbody tr').count();
  assert.equal(hops, 1, 'one injection hop pair');

  // The vantage table: one vantage, all ten hosts intercepted, the injector at hop 3.
  const vantage = await page.locator('#vantages tbody tr td').allTextContents();
  assert.deepEqual(vantage, ['outside', '7', '71.4 %', '10 of 10', '3 (20)']);

  // The events, and a click opens the certificate diff.
  const rows = page.locator('tr[data-testid="event-row"]');
  assert.equal(await rows.count(), 2);
  assert.deepEqual(await page.locator('tr[data-testid="event-row"] td:nth-child(3)').allTextContents(),
                   ['interception-stopped', 'interception-started']);
  assert.equal(await page.locator('#certdiff').isVisible(), false);
  if (process.env.MW_SCREENSHOTS) await page.screenshot({ path: join(process.env.MW_SCREENSHOTS, 'dashboard.png'), fullPage: true });
  await rows.nth(1).click();
  await page.waitForSelector('#certdiff-table tbody tr', { timeout: 10000 });
  assert.equal(await page.locator('#certdiff').isVisible(), true);
  const diff = Object.fromEntries(await page.locator('#certdiff-table tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [tr.cells[0].textContent, { real: tr.cells[1].textContent, forged: tr.cells[2].textContent, differs: tr.className === 'differs' }])));
  assert.equal(diff.subject.differs, false, 'the forgery copies the subject');
  assert.equal(diff.key.differs, true);
  assert.match(diff.key.forged, /RSA 2048 e=3/);
  assert.equal(diff.issuer.differs, true);
  assert.match(diff.issuer.forged, /Security Certificate/);
  assert.equal(diff['chain trusted'].real, 'true');
  assert.equal(diff['chain trusted'].forged, 'false');
  assert.match(await page.locator('#forged-pem').textContent(), /BEGIN CERTIFICATE/);
  if (process.env.MW_SCREENSHOTS) {
    await page.locator('#certdiff').screenshot({ path: join(process.env.MW_SCREENSHOTS, 'certdiff.png') });
    mw(['report', '--db', db, '--ca-file', ca, '--title', 'mitmwatch lab: device off and on', '-o', join(dir, 'report.html')]);
    const report = await browser.newPage({ viewport: { width: 900, height: 1200 } });
    await report.goto(`file://${join(dir, 'report.html')}`);
    await report.screenshot({ path: join(process.env.MW_SCREENSHOTS, 'report.png'), fullPage: true });
  }
  assert.deepEqual(errors, [], 'no script errors on the page');
  console.log('dashboard: ok');
}

try {
  await main();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  cleanup();
}
