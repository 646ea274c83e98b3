export default async function globalTeardownCluster(): Promise<void> {
  await Promise.all((globalThis.__TEST_REDIS_CLUSTERS__ ?? []).map((c) => c.dispose()));
}
