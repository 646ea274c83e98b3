import ipaddr from 'ipaddr.js';

/**
 * What a per-address limit counts: an IPv4 address (IPv4-mapped IPv6 too), or a whole IPv6 /64.
 * A subscriber usually gets at least a /64 and may use any address in it, so counting single IPv6
 * addresses would give one client some 2^64 allowances. Anything unparsable counts as itself.
 */
export function addressGroup(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const v6 = parsed as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  return `${v6.parts
    .slice(0, 4)
    .map((part) => part.toString(16))
    .join(':')}::/64`;
}
