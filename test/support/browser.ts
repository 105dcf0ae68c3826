/** Debian's Chromium for the tests that drive a real browser (playwright-core); absent, those tests skip and say why. */
import { existsSync, readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const haveChromium = existsSync(CHROMIUM);

let axe: string | undefined;

/**
 * axe-core's serious and critical findings on `page` as it is now, each as "name: rule (impact, n nodes)". The CSP
 * forbids inline script, so axe goes in through the automation channel, not a <script> tag.
 */
export async function seriousAxeViolations(page: Page, name: string): Promise<string[]> {
  axe ??= readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(axe);
  // A string, evaluated in the page (the tests are compiled without the DOM's types).
  const found = (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })))`)) as Array<{ id: string; impact: string; nodes: number }>;
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${name}: ${v.id} (${v.impact}, ${v.nodes} nodes)`);
}
