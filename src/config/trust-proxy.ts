import proxyaddr from 'proxy-addr';

/** Decides whether the hop at `index` (0 = the connecting peer) with address `address` is a trusted proxy. */
export type TrustProxy = (address: string, index: number) => boolean;

const TRUST_NONE: TrustProxy = () => false;
const TRUST_ALL: TrustProxy = () => true;

/**
 * TRUST_PROXY compiled the way Express compiles its `trust proxy` setting (express/lib/utils.js
 * compileTrust), so one function decides the client address for HTTP and for sockets alike: it is
 * handed to Express as the setting itself. Unset, `false` or `0`: no proxy is trusted. Throws on a
 * value proxy-addr cannot parse (start-up fails naming the variable).
 */
export function compileTrustProxy(value: string | undefined): TrustProxy {
  const text = value?.trim();
  if (text === undefined || text === '' || text === 'false') return TRUST_NONE;
  if (text === 'true') return TRUST_ALL;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    return (_address, index) => index < hops;
  }
  const entries = text.split(',').map((entry) => entry.trim());
  if (entries.some((entry) => entry === '')) throw new TypeError('empty entry in TRUST_PROXY');
  return proxyaddr.compile(entries);
}
