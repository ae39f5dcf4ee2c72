// Lint: typescript-eslint's recommended rules, plus the layer boundaries of DESIGN.md as import
// rules, so "manager and agent never import each other" is checked rather than hoped for.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'scratch/', '.nexus/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly', Buffer: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['src/contracts/**'],
    rules: restrict(['**/kit/**', '**/manager/**', '**/agent/**', '**/cli/**', 'node:*'], 'contracts/ is vocabulary only: no I/O, no layers above it.'),
  },
  {
    files: ['src/kit/**'],
    rules: restrict(
      ['**/contracts/**', '**/http/**', '**/images/**', '**/manager/**', '**/agent/**', '**/cli/**'],
      'kit/ is mechanics with no domain: it imports nothing of Nexus.',
    ),
  },
  {
    files: ['src/http/**'],
    rules: restrict(
      ['**/images/**', '**/manager/**', '**/agent/**', '**/cli/**'],
      'http/ is the server both processes share: it knows the contracts, not the processes.',
    ),
  },
  { files: ['src/manager/**'], rules: restrict(['**/agent/**', '**/cli/**'], 'manager and agent meet only in contracts/.') },
  { files: ['src/agent/**'], rules: restrict(['**/manager/**', '**/cli/**'], 'manager and agent meet only in contracts/.') },
  // The CLI starts the manager and the agent through one module, which takes only their entry points.
  {
    files: ['src/cli/**'],
    ignores: ['src/cli/launcher.ts'],
    rules: restrict(['**/manager/**', '**/agent/**'], 'the CLI reaches the manager and the agent through cli/launcher.ts.'),
  },
  {
    files: ['src/cli/launcher.ts'],
    rules: restrict(['**/manager/*/**', '**/agent/*/**'], "cli/launcher.ts takes only the manager's and the agent's entry points (main.ts, config.ts)."),
  },
  // (A later block's no-restricted-imports replaces an earlier one's for the same file: each repeats the boundary.)
  {
    files: ['src/manager/domain/**', 'src/manager/scheduler/**'],
    rules: restrict(['node:*', '**/adapters/**', '**/agent/**', '**/cli/**'], 'pure folders do no I/O: time, ids and facts come in as arguments.'),
  },
  {
    files: ['src/agent/domain/**', 'src/agent/plans/**'],
    rules: restrict(
      ['node:*', '**/host/**', '**/drivers/**', '**/manager/**', '**/cli/**'],
      'pure folders do no I/O: time, ids and facts come in as arguments.',
    ),
  },
  // The agent's core (use cases, plans, steps, rules) reaches the host only through ports/: what does
  // I/O lives in host/ and drivers/, so the core runs on in-memory fakes. Types may cross (they are not I/O).
  {
    files: ['src/agent/app/**', 'src/agent/plans/**', 'src/agent/steps/**', 'src/agent/domain/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:fs', 'node:fs/*', 'fs', 'fs/*', 'node:child_process', 'node:net', 'node:http', 'node:https', 'node:dgram', 'node:dns', 'undici'],
              allowTypeImports: true,
              message: "the agent's core does no I/O: do it in host/ or drivers/, behind a port in ports/.",
            },
            {
              group: ['**/host/**', '**/drivers/**', '**/proxy/**', '**/http/**'],
              allowTypeImports: true,
              message: "the agent's core reaches the host through ports/, never host/, drivers/, proxy/ or http/.",
            },
            {
              group: [
                '**/kit/atomic-file*',
                '**/kit/sparse-copy*',
                '**/kit/log-file*',
                '**/kit/log-tail*',
                '**/kit/process-identity*',
                '**/kit/process-root*',
                '**/kit/child-process*',
                '**/kit/host-tool*',
                '**/kit/host-tsc*',
                '**/kit/json-client*',
                '**/kit/dir-lock*',
                '**/kit/key-file*',
                '**/kit/tls-files*',
              ],
              allowTypeImports: true,
              message: "these kit modules do I/O: the agent's core reaches them through a port.",
            },
          ],
        },
      ],
    },
  },
  { files: ['test/**', 'bench/**', 'scripts/**', 'scratch/**'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  { files: ['bin/**', 'scripts/**'], languageOptions: { globals: { process: 'readonly' } } },
  // CommonJS where Node needs it (a --require preload runs where an --import one does not).
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', exports: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
