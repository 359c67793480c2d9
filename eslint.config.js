// House style, part 2 (part 1 is Prettier, .prettierrc.json): typescript-eslint with type
// information. Prettier owns layout, so no rule here is about whitespace or line width.
// Run: `npm run lint` (also the first step of `npm test`).
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const WORKFLOW_SANDBOX =
  'workflows run in the deterministic workflow sandbox, and the worker bundler rejects Node built-ins: ' +
  'do I/O, clocks and randomness in an activity (activities/) and call it through proxyActivities.';
const ACTIVITY_IMPL =
  'a workflow calls activities through proxyActivities, never directly: importing an implementation drags ' +
  'Node code into the workflow bundle and runs a side effect outside an activity (no retry, not in history). ' +
  '`import type` is fine.';

export default defineConfig(
  {
    ignores: ['node_modules/', 'bench/results/', 'test/lab/crds/', 'test/replay/histories/'],
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // The vitest configs beside vitest.config.ts are outside tsconfig.json's include.
        projectService: { allowDefaultProject: ['vitest.*.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // An un-awaited activity, `condition` or `sleep` in a workflow, or an un-awaited write in an
      // activity, is a real bug: the step is not ordered, and its failure is lost.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // A `let` read by a callback before its one assignment (a shutdown handler installed before the worker exists)
      // cannot be a const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // Fastify plugins and handlers, and Temporal's PayloadCodec, are promise-returning interfaces: an `async`
      // function without `await` is how they are written. The floating/misused-promise rules carry the value.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Plain JavaScript (the CLI shim, the CommonJS failure converter, this file): no type information.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
  },
  {
    // CommonJS on purpose (worker/failure-converter.cjs is loaded by path, also in the workflow
    // sandbox): require is its import.
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', module: 'writable', exports: 'writable' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tests read Fastify's `inject().json()` and parsed YAML, which are `any` by their libraries' types, and feed
    // deliberately malformed input (`as any`) to validators: the unsafe-any family would flag the point of the test.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Workflow inputs and the config schema are the contract: no `any` may leak into them.
    files: ['workflows/**/*.ts', 'config/schema.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unsafe-argument': 'error',
      '@typescript-eslint/no-unsafe-assignment': 'error',
      '@typescript-eslint/no-unsafe-return': 'error',
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...builtinModules.filter((m) => !m.startsWith('_')).map((name) => ({ name, message: WORKFLOW_SANDBOX })),
            ...['@temporalio/activity', '@temporalio/client', '@temporalio/worker', '@temporalio/testing'].map(
              (name) => ({
                name,
                allowTypeImports: true,
                message: `${name} is not available in the workflow sandbox. ${WORKFLOW_SANDBOX}`,
              }),
            ),
          ],
          patterns: [
            { group: ['node:*'], message: WORKFLOW_SANDBOX },
            { group: ['**/activities', '**/activities/**'], allowTypeImports: true, message: ACTIVITY_IMPL },
            {
              group: ['**/worker/**', '**/api/**', '**/config/loader*', '**/config/registry*'],
              allowTypeImports: true,
              message: `process-side code (I/O). ${WORKFLOW_SANDBOX}`,
            },
          ],
        },
      ],
    },
  },
);
