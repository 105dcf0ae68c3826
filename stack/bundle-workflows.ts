/**
 * Bundles the workflow code once, in a short-lived process of its own, for the workers `npm start` launches: a
 * worker that bundles for itself keeps webpack's memory for its whole life (about a third of its resident size).
 * `node --import tsx stack/bundle-workflows.ts OUT.js`
 */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/workflow-bundle';

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: bundle-workflows.ts OUT.js');
  const { code } = await bundleWorkflowCode({
    ...workflowBundleOptions(),
    // Warnings only: `npm start` prints one line when ready, not webpack's report.
    logger: new DefaultLogger('WARN'),
  });
  writeFileSync(out, code);
}

main().catch((err: unknown) => {
  console.error(`cmk: bundling the workflows failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
