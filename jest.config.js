/**
 * Three projects in one run: `unit` (specs beside the code, src/**\/*.spec.ts, and the test helpers'
 * own specs; they need a real Redis but no build), `e2e` (test/*.e2e-spec.ts, the built app as
 * child processes, on one redis-server) and `e2e-cluster` (the same specs again, on a Redis Cluster
 * the tests start themselves). `npm test` runs all three; `npm run test:unit` / `npm run test:e2e`
 * one of them (`--selectProjects`; `npm test -- --selectProjects e2e-cluster` the third). NestJS 12
 * ships ES modules only, and Node 20's jest cannot require() them, so tests run as ES modules
 * (`node --experimental-vm-modules`, see the scripts). ts-jest type-checks each file with the whole
 * program, so type-only imports are elided correctly.
 */
const shared = {
  rootDir: '.',
  moduleFileExtensions: ['js', 'json', 'ts'],
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        useESM: true,
        tsconfig: {
          module: 'esnext',
          moduleResolution: 'bundler',
          target: 'es2022',
          isolatedModules: false,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          useDefineForClassFields: false,
          esModuleInterop: true,
          strict: true,
          strictPropertyInitialization: false,
          skipLibCheck: true,
          types: ['node', 'jest'],
        },
      },
    ],
  },
  testEnvironment: 'node',
  // unit and e2e share one redis-server (jest runs this setup once for both).
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
};

module.exports = {
  testTimeout: 30000,
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/support/**/*.spec.ts'] },
    { ...shared, displayName: 'e2e', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
    {
      ...shared,
      displayName: 'e2e-cluster',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      // Read by test-redis.ts (testRedisTarget): per test file, so never seen by the other projects'
      // files running in the same worker (process.env would be).
      globals: { TEST_REDIS_TARGET: 'cluster' },
      globalSetup: '<rootDir>/test/support/global-setup-cluster.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown-cluster.ts',
      // Suites about one redis-server process (stopped, paused, restarted under the app) start
      // their own and never read the target, and the Markdown renderer's never touches Redis:
      // run once, in e2e.
      testPathIgnorePatterns: [
        '/node_modules/',
        '/test/redis-outage\\.e2e-spec\\.ts$',
        '/test/shutdown-without-redis\\.e2e-spec\\.ts$',
        '/test/browser-markdown\\.e2e-spec\\.ts$',
      ],
    },
  ],
};
