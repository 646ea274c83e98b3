import { bearerToken } from './bearer';

describe('bearerToken', () => {
  it.each([
    ['Bearer abc.1.x', 'abc.1.x'],
    ['bearer abc', 'abc'],
    ['BEARER abc', 'abc'],
    ['BeArEr   abc  ', 'abc'],
    ['  Bearer\tabc', 'abc'],
  ])('%j → %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it.each([[undefined], [''], ['Bearer'], ['Bearer   '], ['Bearerabc'], ['Basic abc'], ['abc'], [['Bearer abc']]])(
    '%j → null',
    (header) => {
      expect(bearerToken(header)).toBeNull();
    },
  );
});
