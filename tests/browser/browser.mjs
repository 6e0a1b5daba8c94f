// Headless Chromium for the end-to-end tests: Debian's /usr/bin/chromium driven by
// playwright-core (no browser download), a fresh profile per run, and a page wrapper that
// saves a screenshot, the page's HTML and its console into the test output on failure.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { waitFor } from '../../clients/js/testing/pushd.js';

export const outputDir =
  process.env.TEST_OUTPUT_DIR ?? join(dirname(fileURLToPath(import.meta.url)), 'output');

// As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser() {
  const profile = await mkdtemp(join(tmpdir(), 'pushd-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60000,
      viewport: { width: 1100, height: 900 },
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

const safeName = (s) => s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);

/**
 * Runs `fn(page)` in a new tab. On failure saves <name>-failure.png/.html/.log into outputDir;
 * an uncaught error on the page fails the test too.
 */
export async function withPage(browser, name, fn) {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(15000);
  const log = [];
  const pageErrors = [];
  page.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => {
    log.push(`[pageerror] ${e.stack ?? e.message}`);
    pageErrors.push(e);
  });
  try {
    await fn(page);
    if (pageErrors.length) throw new Error(`uncaught error on the page: ${pageErrors[0].message}`);
  } catch (e) {
    const base = join(outputDir, `${safeName(name)}-failure`);
    await mkdir(outputDir, { recursive: true });
    await page.screenshot({ path: `${base}.png`, fullPage: true }).catch(() => {});
    await writeFile(`${base}.html`, await page.content().catch(() => '')).catch(() => {});
    await writeFile(`${base}.log`, log.join('\n')).catch(() => {});
    e.message += `\n(screenshot, HTML and console of the page: ${base}.*)`;
    throw e;
  } finally {
    await page.close();
  }
}

/** Saves a screenshot into outputDir (for a person to look at). */
export async function screenshot(page, name) {
  await mkdir(outputDir, { recursive: true });
  const path = join(outputDir, `${safeName(name)}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Waits (bounded) until the element's text matches; the error shows the last text seen. */
export async function waitText(page, selector, pattern, timeout = 10000) {
  let last = null;
  try {
    await waitFor(
      async () => {
        last = await page.locator(selector).textContent({ timeout });
        return pattern.test(last ?? '');
      },
      { timeout, what: `${selector} to match ${pattern}` },
    );
  } catch (e) {
    e.message += ` (last text: ${JSON.stringify(last)})`;
    throw e;
  }
  return last;
}

/** The seqs of the messages the page shows, in page order. */
export function pageSeqs(page) {
  return page.$$eval('#log li.message', (lis) => lis.map((li) => Number(li.dataset.seq)));
}
