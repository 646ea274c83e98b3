// @ts-check
import eslint from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/**
 * ESLint's recommended rules and typescript-eslint's type-checked ones over src/, test/ and bench/;
 * formatting is Prettier's business (eslint-config-prettier turns the clashing rules off). The
 * built-in page (src/public/js) is plain browser JavaScript without a build step: ES modules, linted
 * with the recommended rules against the browser's globals.
 */
export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', 'bench/results/', 'test-artifacts/'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // Config files are not part of the TypeScript program.
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    // The web page: ES modules loaded by the browser (index.html), plus `io`, the global that
    // /socket.io/socket.io.js defines before them. Browser globals are listed here rather than
    // taken from a package: the page uses few, and a new one should be a conscious choice.
    files: ['src/public/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      ecmaVersion: 2022,
      globals: Object.fromEntries(
        [
          'io',
          'window',
          'document',
          'navigator',
          'localStorage',
          'sessionStorage',
          'location',
          'fetch',
          'crypto',
          'performance',
          'requestAnimationFrame',
          'setTimeout',
          'clearTimeout',
          'URL',
          'Blob',
          'AbortSignal',
          'CSS',
          'Element',
          'HTMLElement',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    files: ['jest.config.js'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable' } },
  },
  prettier,
);
