/**
 * The floor plan, checked by `npm run lint` (docs/ARCHITECTURE.md): the domain at the ground floor imports nothing of
 * ours; the adapters of real parts never import the workflows, activities, worker, API or client above them; no
 * cycles; the product never imports test code. harness/ drives a running cmk from outside (the embedded stack as a
 * child, a SendGrid stand-in, hostile inputs) for tests, benchmarks, the fuzzer and the fault suite: it may import the
 * product, the product never imports it, and it never imports test/.
 */
const ADAPTERS = '^(audit|codec|common|config|database|keyfiles|mail|vault)/';
const ABOVE_ADAPTERS = '^(workflows|activities|worker|api|client|stack)/';

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'A cycle means two modules are one: merge them, or move what both need below them.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'domain-is-the-ground-floor',
      severity: 'error',
      comment: 'domain/ holds the rules, codes and model: pure, read by workflows and everything else; it imports nothing of ours.',
      from: { path: '^domain/' },
      to: { path: '^(?!domain/)', dependencyTypesNot: ['npm', 'npm-dev', 'core'] },
    },
    {
      name: 'adapters-stay-down',
      severity: 'error',
      comment: 'An adapter of a real part (vault, database, mail, …) is called by activities; it never calls up into them.',
      from: { path: ADAPTERS },
      to: { path: ABOVE_ADAPTERS },
    },
    {
      name: 'workflows-only-use-the-domain',
      severity: 'error',
      comment: 'Workflow code is replayed: it reads the domain and its own modules, and only types from elsewhere.',
      from: { path: '^workflows/' },
      to: { path: '^(?!workflows/|domain/)', dependencyTypesNot: ['npm', 'npm-dev', 'core', 'type-only'] },
    },
    {
      name: 'the-console-runs-in-a-browser',
      severity: 'error',
      comment:
        "console/src is bundled for the browser: besides npm packages, it uses its own modules, the domain (rules, R12's isAllowed), the error type and the Node-free PKCS#12 parts; the API's schemas for types only; no Node built-in.",
      from: { path: '^console/src/' },
      to: { path: '^(?!console/src/|domain/|common/errors\\.ts$|keyfiles/pkcs12-(layout|derive)\\.ts$)', dependencyTypesNot: ['npm', 'npm-dev', 'type-only'] },
    },
    {
      name: 'the-product-never-imports-tests',
      severity: 'error',
      comment: 'test/ may import anything; nothing but tests imports test/.',
      from: { path: '^(?!test/)' },
      to: { path: '^test/' },
    },
    {
      name: 'the-product-never-imports-the-harness',
      severity: 'error',
      comment: 'Only tests, benchmarks, the fuzzer and the fault suite drive cmk through harness/.',
      from: { path: '^(?!test/|bench/|scripts/fuzz|harness/)' },
      to: { path: '^harness/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|var|\\.venv|coverage)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // .tsx: the console's components.
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js', '.json'] },
  },
};
