import { expect } from '@jest/globals';
import { addressGroup } from './address-group';

describe('addressGroup', () => {
  it('counts every address of one IPv6 /64 as one client, other /64s apart', () => {
    const a = addressGroup('2001:db8:1:2::1');
    expect(addressGroup('2001:db8:1:2:ffff:ffff:ffff:fffe')).toBe(a);
    expect(addressGroup('2001:0db8:0001:0002:0000:0000:0000:abcd')).toBe(a);
    expect(addressGroup('2001:db8:1:3::1')).not.toBe(a);
  });

  it('counts an IPv4 address and its IPv4-mapped IPv6 form alike, each IPv4 address apart', () => {
    expect(addressGroup('::ffff:203.0.113.7')).toBe(addressGroup('203.0.113.7'));
    expect(addressGroup('203.0.113.7')).not.toBe(addressGroup('203.0.113.8'));
  });

  it('keeps what is not an IP address as it is', () => {
    expect(addressGroup('unknown')).toBe('unknown');
  });
});
