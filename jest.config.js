/**
 * Two projects in one run: `unit` (specs beside the code, src/**\/*.spec.ts, and the test helpers'
 * own specs; they need a real Redis but no build) and `e2e` (test/*.e2e-spec.ts, the built app as
 * child processes). `npm test` runs both; `npm run test:unit` / `npm run test:e2e` one of them
 * (`--selectProjects`). NestJS 12 ships ES modules only, and Node 20's jest cannot require() them, so
 * tests run as ES modules (`node --experimental-vm-modules`, see the scripts). ts-jest type-checks
 * each file with the whole program, so type-only imports are elided correctly.
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
  // Both projects share one redis-server: the second setup finds the first one's.
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
};

module.exports = {
  testTimeout: 30000,
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/support/**/*.spec.ts'] },
    { ...shared, displayName: 'e2e', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
  ],
};
