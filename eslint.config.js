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
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  { files: ['src/contracts/**'], rules: restrict(['**/kit/**', '**/manager/**', '**/agent/**', '**/cli/**', 'node:*'], 'contracts/ is vocabulary only: no I/O, no layers above it.') },
  { files: ['src/kit/**'], rules: restrict(['**/manager/**', '**/agent/**', '**/cli/**'], 'kit/ is mechanics with no domain: it imports no layer above it.') },
  { files: ['src/manager/**'], rules: restrict(['**/agent/**', '**/cli/**'], 'manager and agent meet only in contracts/.') },
  { files: ['src/agent/**'], rules: restrict(['**/manager/**', '**/cli/**'], 'manager and agent meet only in contracts/.') },
  {
    files: ['src/manager/domain/**', 'src/manager/scheduler/**', 'src/agent/domain/**', 'src/agent/plans/**'],
    rules: restrict(['node:*', '**/adapters/**', '**/host/**', '**/drivers/**'], 'pure folders do no I/O: time, ids and facts come in as arguments.'),
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
