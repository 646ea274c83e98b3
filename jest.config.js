/**
 * One jest run for everything: unit specs beside the code (src/**\/*.spec.ts) and end-to-end specs
 * in test/. NestJS 12 ships ES modules only, and Node 20's jest cannot require() them, so tests run
 * as ES modules (`node --experimental-vm-modules`, see the `test` script). ts-jest type-checks each
 * file with the whole program, so type-only imports are elided correctly.
 */
module.exports = {
  rootDir: '.',
  roots: ['<rootDir>/src', '<rootDir>/test'],
  testRegex: '.*\\.(spec|e2e-spec)\\.ts$',
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
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 30000,
};
