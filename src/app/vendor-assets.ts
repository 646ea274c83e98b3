import { accessSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Request, Response } from 'express';

/**
 * The web page's third-party libraries, served straight from node_modules: no bundler and no copy
 * step, and `npm update` updates the page too. Each URL maps to exactly one file (never a directory:
 * the rest of node_modules stays unreachable). The page's modules import these URLs relatively
 * (src/public/js/markdown-*.js).
 */
export interface VendorAsset {
  url: string;
  /** npm package the file comes from. */
  packageName: string;
  /** Path inside the package. */
  file: string;
  contentType: string;
}

const JS = 'text/javascript; charset=utf-8';

export const VENDOR_ASSETS: readonly VendorAsset[] = [
  // markdown-it's ES-module browser build (one self-contained file).
  {
    url: '/vendor/markdown-it/markdown-it.esm.min.mjs',
    packageName: 'markdown-it',
    file: 'dist/browser/markdown-it.esm.min.mjs',
    contentType: JS,
  },
  // highlight.js ships its browser builds in @highlightjs/cdn-assets (the highlight.js package has
  // none): core plus the ~40 common languages, as one ES module.
  { url: '/vendor/highlight.js/es/highlight.min.js', packageName: '@highlightjs/cdn-assets', file: 'es/highlight.min.js', contentType: JS },
  {
    url: '/vendor/highlight.js/styles/github-dark.min.css',
    packageName: '@highlightjs/cdn-assets',
    file: 'styles/github-dark.min.css',
    contentType: 'text/css; charset=utf-8',
  },
];

// Resolved the way this file's own imports are; jest's ES-module mode has no __filename and runs from the project root.
const requireHere = createRequire(typeof __filename === 'string' ? __filename : join(process.cwd(), 'package.json'));

export function vendorAssetPath(asset: VendorAsset): string {
  return join(dirname(requireHere.resolve(`${asset.packageName}/package.json`)), asset.file);
}

/** Where the routes go: the Express instance under Nest. */
export interface VendorRoutes {
  get(path: string, handler: (req: Request, res: Response) => void): unknown;
}

/** Adds a GET (and HEAD) route per asset. Throws at start-up if a file is missing, rather than the page failing later. */
export function serveVendorAssets(routes: VendorRoutes): void {
  for (const asset of VENDOR_ASSETS) {
    const path = vendorAssetPath(asset);
    accessSync(path);
    // sendFile answers conditional requests (ETag, Last-Modified) like the page's other static files.
    routes.get(asset.url, (_req, res) => res.type(asset.contentType).sendFile(path));
  }
}
