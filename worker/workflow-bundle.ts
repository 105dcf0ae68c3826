/**
 * What the workflows' bundle is made of, the same wherever it is built: `npm start` (stack/bundle-workflows.ts), a
 * worker that bundles for itself (worker/main.ts), and the tests' in-process workers.
 */
import type { BundleOptions } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../codec';

/**
 * Modules the tenant workflows use that keep nothing of any one workflow: the worker loads them once and every
 * workflow it keeps in memory shares them. Every other module of the bundle is evaluated again for each cached
 * workflow (the SDK's isolation). The check of signed requests (domain/signed.ts) brings ed25519, about 1 MB of heap
 * once loaded and 1.1 MB more for the table its first verification builds (docs/PERFORMANCE.md, "What a cached tenant
 * costs"); shared, both are paid once, and the SDK freezes what it can reach of them. Named by path, not by package:
 * the bundle reaches ed25519 through `import` (its ES module), and a package name here would load its CommonJS twin.
 */
const SHARED_WORKFLOW_MODULES: readonly string[] = [require.resolve('../domain/signed')];

export function workflowBundleOptions(): BundleOptions {
  return {
    workflowsPath: require.resolve('../workflows'),
    failureConverterPath: FAILURE_CONVERTER_PATH,
    preloadModules: [...SHARED_WORKFLOW_MODULES],
  };
}
