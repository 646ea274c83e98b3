import { encodeToken, parseToken, signedByAny } from './token-format';

const A = Buffer.from('secret-A-0123456789abcdef');
const B = Buffer.from('secret-B-0123456789abcdef');

describe('token format v2', () => {
  const token = encodeToken(A, 'sid_1', 1_900_000_000);

  it('round-trips: the parts come back and the signature matches its secret only', () => {
    const parsed = parseToken(token);
    expect(parsed).toMatchObject({ sessionId: 'sid_1', expiresAt: 1_900_000_000 });
    expect(signedByAny(parsed!, [A])).toBe(true);
    expect(signedByAny(parsed!, [B, A])).toBe(true);
    expect(signedByAny(parsed!, [B])).toBe(false);
    expect(signedByAny(parsed!, [])).toBe(false);
  });

  it('binds the expiry: another expiry under the same signature does not verify', () => {
    const [sid, , signature] = token.split('.');
    const stretched = parseToken(`${sid}.${(1_900_000_001).toString(36)}.${signature}`);
    expect(stretched).not.toBeNull();
    expect(signedByAny(stretched!, [A])).toBe(false);
  });

  it.each([
    ['v1 (no expiry)', `sid_1.${'a'.repeat(43)}`],
    ['an expiry with a leading zero', `sid_1.0${(1_900_000_000).toString(36)}.${token.split('.')[2]}`],
    ['an upper-case expiry', `sid_1.${(1_900_000_000).toString(36).toUpperCase()}.${token.split('.')[2]}`],
    ['a short signature', 'sid_1.abc.xyz'],
    ['four parts', `${token}.x`],
    ['a bad session id', `a*b.abc.${'a'.repeat(43)}`],
    ['an overlong token', `${'a'.repeat(64)}.${'b'.repeat(10)}.${'c'.repeat(150)}`],
    ['not a string', 42],
  ])('refuses %s', (_name, value) => {
    expect(parseToken(value)).toBeNull();
  });
});
