import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { serveVendorAssets, VENDOR_ASSETS, vendorAssetPath } from './vendor-assets';

@Module({})
class EmptyModule {}

/** Status of a GET with these headers. Not fetch(): it adds `Cache-Control: no-cache` to conditional requests. */
function statusOf(url: string, headers: Record<string, string>): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    }).on('error', reject);
  });
}

describe('vendor assets (the page libraries served from node_modules)', () => {
  let app: NestExpressApplication;
  let base: string;

  beforeAll(async () => {
    app = await NestFactory.create<NestExpressApplication>(EmptyModule, { logger: false });
    serveVendorAssets(app.getHttpAdapter().getInstance());
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
  });

  afterAll(async () => {
    await app?.close();
  });

  it('lists one file per URL, all under /vendor/', () => {
    const urls = VENDOR_ASSETS.map((a) => a.url);
    expect(new Set(urls).size).toBe(urls.length);
    for (const asset of VENDOR_ASSETS) {
      expect(asset.url).toMatch(/^\/vendor\/[\w.@-]+(\/[\w.@-]+)+$/);
      expect(asset.file).not.toMatch(/(^|\/)\.\.(\/|$)/);
    }
  });

  it('serves each file as it is in node_modules, with its content type, and answers revalidation with 304', async () => {
    for (const asset of VENDOR_ASSETS) {
      const res = await fetch(base + asset.url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(asset.contentType);
      expect(Buffer.from(await res.arrayBuffer()).equals(readFileSync(vendorAssetPath(asset)))).toBe(true);
      const etag = res.headers.get('etag');
      expect(etag).toBeTruthy();
      expect(await statusOf(base + asset.url, { 'if-none-match': etag! })).toBe(304);
    }
  });

  it('serves nothing else of those packages', async () => {
    const neighbours = [
      '/vendor/markdown-it/package.json',
      '/vendor/markdown-it/markdown-it.cjs.js',
      '/vendor/markdown-it/dist/browser/markdown-it.esm.min.mjs',
      '/vendor/highlight.js/es/core.min.js',
      '/vendor/highlight.js/styles/github.min.css',
      '/vendor/highlight.js/es/highlight.min.js/..%2f..%2fpackage.json',
      '/vendor/',
    ];
    for (const url of neighbours) expect([url, (await fetch(base + url)).status]).toEqual([url, 404]);
  });
});
