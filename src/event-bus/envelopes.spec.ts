import {
  CHAT_EVENT_TYPES,
  ChatEvent,
  ChatEventType,
  Command,
  CommandType,
  decodeCommand,
  decodeEvent,
  Decoded,
  encodeCommand,
  encodeEnvelope,
  encodeEvent,
} from './envelopes';

const SID = 'session_1';
const MID = 'message-1';
const ref = { sessionId: SID, messageId: MID };

/** Builds raw stream fields by hand (not through encode*), so decoding is tested independently. */
function fields(type: string | undefined, data: unknown, version: string | null = '1'): string[] {
  const out: string[] = [];
  if (version !== null) out.push('v', version);
  if (type !== undefined) out.push('type', type);
  out.push('data', typeof data === 'string' ? data : JSON.stringify(data));
  return out;
}

function expectFailure<T>(result: Decoded<T>, ...mustMention: (string | RegExp)[]): string {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error('unreachable');
  expect(typeof result.reason).toBe('string');
  for (const m of mustMention) {
    if (typeof m === 'string') expect(result.reason).toContain(m);
    else expect(result.reason).toMatch(m);
  }
  return result.reason;
}

// One valid example of every event type; the Record type makes the compiler insist on all of them.
const EVENT_EXAMPLES: { [K in ChatEventType]: Extract<ChatEvent, { type: K }>['payload'][] } = {
  'chat.user_message': [
    { ...ref, content: 'Hello "world" \n{}', createdAt: '2024-01-01T00:00:00.000Z' },
    { ...ref, content: 'again', createdAt: '2024-01-01T00:00:00.000Z', model: 'gpt-oss:120b', replaces: 'm-old' },
  ],
  'chat.started': [
    { ...ref, attempt: 0 },
    { ...ref, attempt: 3 },
    { ...ref, attempt: 1, contextMessages: 4, contextOmitted: true },
  ],
  'chat.title': [{ ...ref, title: 'Redis Streams in two sentences' }],
  'chat.thinking': [
    { ...ref, delta: 'Let me think' },
    { ...ref, delta: '' },
  ],
  'chat.delta': [
    { ...ref, delta: ' token' },
    { ...ref, delta: '😀 ünïcødé' },
  ],
  'chat.completed': [
    { ...ref, content: 'Answer', usage: { promptTokens: 12, completionTokens: 34 } },
    { ...ref, content: '', thinking: 'reasoning', usage: { promptTokens: 0, completionTokens: 0 } },
  ],
  'chat.failed': [{ ...ref, error: { code: 'model_not_found', message: 'Pull it with `ollama pull gpt-oss:20b`' } }],
  'chat.cancelled': [ref],
  'chat.status': [
    { ...ref, state: 'queued', detail: 'Waiting for 2 earlier message(s) of this chat.', ahead: 2 },
    { ...ref, state: 'waiting_for_model', detail: 'Waiting for the model…' },
    { ...ref, state: 'retrying', detail: 'Retrying after an error' },
  ],
};

const COMMAND_EXAMPLES: { [K in CommandType]: Extract<Command, { type: K }>['payload'][] } = {
  // The message's text and options are in the session's hash: the command only names it.
  'chat.generate': [ref],
};

describe('envelopes', () => {
  describe('encodeEnvelope', () => {
    it('writes v, type and data fields in order', () => {
      expect(encodeEnvelope('chat.delta', { a: 1 })).toEqual(['v', '1', 'type', 'chat.delta', 'data', '{"a":1}']);
    });
  });

  describe('event round trip', () => {
    it('CHAT_EVENT_TYPES lists every event type (each has an example here)', () => {
      expect(Object.keys(EVENT_EXAMPLES).sort()).toEqual([...CHAT_EVENT_TYPES].sort());
    });

    const cases = CHAT_EVENT_TYPES.flatMap((type) =>
      EVENT_EXAMPLES[type].map((payload, i) => [`${type} #${i}`, { type, payload } as ChatEvent] as const),
    );
    it.each(cases)('%s decodes to exactly what was encoded', (_name, event) => {
      const encoded = encodeEvent(event);
      expect(encoded).toEqual(['v', '1', 'type', event.type, 'data', JSON.stringify(event.payload)]);
      const decoded = decodeEvent(encoded);
      expect(decoded).toEqual({ ok: true, value: event });
    });

    it.each(cases)('%s is not a valid command', (_name, event) => {
      expectFailure(decodeCommand(encodeEvent(event)), 'unknown command type', event.type);
    });
  });

  describe('command round trip', () => {
    const cases = (Object.keys(COMMAND_EXAMPLES) as CommandType[]).flatMap((type) =>
      COMMAND_EXAMPLES[type].map((payload, i) => [`${type} #${i}`, { type, payload }] as const),
    );
    it.each(cases)('%s decodes to exactly what was encoded', (_name, command) => {
      const decoded = decodeCommand(encodeCommand(command));
      expect(decoded).toEqual({ ok: true, value: command });
    });

    it.each(cases)('%s is not a valid event', (_name, command) => {
      expectFailure(decodeEvent(encodeCommand(command)), 'unknown event type', command.type);
    });
  });

  describe('field order and extra fields', () => {
    it('accepts fields in any order', () => {
      const payload = { ...ref, delta: 'x' };
      const r = decodeEvent(['data', JSON.stringify(payload), 'type', 'chat.delta', 'v', '1']);
      expect(r).toEqual({ ok: true, value: { type: 'chat.delta', payload } });
    });

    it('ignores unrelated stream fields', () => {
      const r = decodeEvent(['trace', 'abc', ...fields('chat.cancelled', ref)]);
      expect(r).toEqual({ ok: true, value: { type: 'chat.cancelled', payload: ref } });
    });
  });

  describe('envelope rejections (both decoders)', () => {
    const decoders = [
      ['decodeEvent', decodeEvent, 'chat.cancelled'],
      ['decodeCommand', decodeCommand, 'chat.generate'],
    ] as const;
    const validGenerate = { ...ref };

    const cases: [string, (type: string) => string[], (string | RegExp)[]][] = [
      ['wrong version 2', (t) => fields(t, validGenerate, '2'), ['version', '"2"']],
      ['wrong version 01', (t) => fields(t, validGenerate, '01'), ['version']],
      ['version with spaces', (t) => fields(t, validGenerate, ' 1'), ['version']],
      ['empty version', (t) => fields(t, validGenerate, ''), ['version']],
      ['missing version', (t) => fields(t, validGenerate, null), ['version', 'null']],
      ['no fields at all', () => [], ['version']],
      ['missing type', () => fields(undefined, validGenerate), ['type']],
      ['empty type', () => fields('', validGenerate), ['type']],
      ['missing data', (t) => ['v', '1', 'type', t], ['data']],
      ['data not JSON', (t) => fields(t, '{not json'), ['data', 'JSON']],
      ['data empty string', (t) => fields(t, ''), ['data', 'JSON']],
      ['data truncated JSON', (t) => fields(t, '{"sessionId":"a"'), ['data', 'JSON']],
      ['data is an array', (t) => fields(t, '[]'), ['data', 'object']],
      ['data is a filled array', (t) => fields(t, JSON.stringify([validGenerate])), ['data', 'object']],
      ['data is null', (t) => fields(t, 'null'), ['data', 'object']],
      ['data is a number', (t) => fields(t, '42'), ['data', 'object']],
      ['data is a string', (t) => fields(t, '"{}"'), ['data', 'object']],
      ['data is true', (t) => fields(t, 'true'), ['data', 'object']],
      ['odd field count loses data', (t) => ['v', '1', 'type', t, 'data'], ['data']],
    ];

    for (const [decoderName, decode, type] of decoders) {
      it.each(cases)(`${decoderName}: %s`, (_name, build, mentions) => {
        let result: Decoded<unknown> | undefined;
        expect(() => {
          result = decode(build(type));
        }).not.toThrow();
        expectFailure(result!, ...mentions);
      });
    }

    it.each(['chat.unknown', 'CHAT.DELTA', 'chat.delta ', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 'chat.generate'])(
      'decodeEvent rejects unknown type %j',
      (type) => {
        expectFailure(decodeEvent(fields(type, ref)), 'unknown event type', JSON.stringify(type));
      },
    );

    it.each(['chat.unknown', 'chat.delta', 'constructor', 'toString', '__proto__', 'valueOf', 'Chat.Generate'])(
      'decodeCommand rejects unknown type %j',
      (type) => {
        expectFailure(decodeCommand(fields(type, { ...ref, content: 'x', createdAt: 't' })), 'unknown command type', JSON.stringify(type));
      },
    );
  });

  describe('hostile and malformed ids', () => {
    const badIds: [string, unknown][] = [
      ['path traversal', '../x'],
      ['glob star', 'a*b'],
      ['hash tag braces', '{x}'],
      ['colon (key separator)', 'a:b'],
      ['trailing newline', 'abc\n'],
      ['leading newline', '\nabc'],
      ['embedded newline', 'a\nb'],
      ['carriage return', 'a\rb'],
      ['space', 'a b'],
      ['empty', ''],
      ['65 chars', 'a'.repeat(65)],
      ['non-ascii', 'sessión'],
      ['number', 42],
      ['null', null],
      ['array', ['abc']],
      ['object', { id: 'abc' }],
      ['boolean', true],
    ];

    for (const field of ['sessionId', 'messageId'] as const) {
      it.each(badIds)(`event rejects ${field} %s`, (_name, value) => {
        const data = { ...ref, delta: 'x', [field]: value };
        expectFailure(decodeEvent(fields('chat.delta', data)), 'chat.delta', `${field} must be an id`);
      });
      it.each(badIds)(`command rejects ${field} %s`, (_name, value) => {
        const data = { ...ref, [field]: value };
        expectFailure(decodeCommand(fields('chat.generate', data)), 'chat.generate', `${field} must be an id`);
      });
      it(`rejects a missing ${field}`, () => {
        const data: Record<string, unknown> = { ...ref };
        delete data[field];
        expectFailure(decodeCommand(fields('chat.generate', data)), `${field} must be an id`);
      });
    }

    it('accepts a 64-char id and the full id alphabet', () => {
      const data = { sessionId: 'a'.repeat(64), messageId: 'AZaz09_-', delta: 'x' };
      expect(decodeEvent(fields('chat.delta', data))).toEqual({ ok: true, value: { type: 'chat.delta', payload: data } });
    });
  });

  describe('command fields', () => {
    it('ignores fields beyond the message reference (older commands carried the text)', () => {
      const data = { ...ref, content: 'hello', createdAt: '2024-01-01T00:00:00.000Z', think: 'extreme' };
      expect(decodeCommand(fields('chat.generate', data))).toEqual({ ok: true, value: { type: 'chat.generate', payload: data } });
    });
  });

  describe('event field rejections', () => {
    const usage = { promptTokens: 1, completionTokens: 2 };
    const cases: [string, ChatEventType, Record<string, unknown>, string][] = [
      ['user_message content missing', 'chat.user_message', { ...ref, createdAt: 't' }, 'content must be a string'],
      ['user_message content number', 'chat.user_message', { ...ref, content: 5, createdAt: 't' }, 'content must be a string'],
      ['user_message createdAt missing', 'chat.user_message', { ...ref, content: 'x' }, 'createdAt must be a string'],
      ['started attempt missing', 'chat.started', { ...ref }, 'attempt must be a non-negative integer'],
      ['started attempt string', 'chat.started', { ...ref, attempt: '1' }, 'attempt must be a non-negative integer'],
      ['started attempt float', 'chat.started', { ...ref, attempt: 1.5 }, 'attempt must be a non-negative integer'],
      ['started attempt negative', 'chat.started', { ...ref, attempt: -1 }, 'attempt must be a non-negative integer'],
      ['started attempt null (NaN)', 'chat.started', { ...ref, attempt: null }, 'attempt must be a non-negative integer'],
      ['started attempt boolean', 'chat.started', { ...ref, attempt: true }, 'attempt must be a non-negative integer'],
      ['thinking delta missing', 'chat.thinking', { ...ref }, 'delta must be a string'],
      ['thinking delta number', 'chat.thinking', { ...ref, delta: 1 }, 'delta must be a string'],
      ['delta delta missing', 'chat.delta', { ...ref }, 'delta must be a string'],
      ['delta delta array', 'chat.delta', { ...ref, delta: ['a'] }, 'delta must be a string'],
      ['completed content missing', 'chat.completed', { ...ref, usage }, 'content must be a string'],
      ['completed thinking number', 'chat.completed', { ...ref, content: 'x', thinking: 1, usage }, 'thinking must be a string'],
      ['completed thinking null', 'chat.completed', { ...ref, content: 'x', thinking: null, usage }, 'thinking must be a string'],
      ['completed usage missing', 'chat.completed', { ...ref, content: 'x' }, 'usage must be an object'],
      ['completed usage null', 'chat.completed', { ...ref, content: 'x', usage: null }, 'usage must be an object'],
      ['completed usage string', 'chat.completed', { ...ref, content: 'x', usage: '1,2' }, 'usage must be an object'],
      ['completed usage empty', 'chat.completed', { ...ref, content: 'x', usage: {} }, 'usage promptTokens must be a non-negative integer'],
      [
        'completed promptTokens negative',
        'chat.completed',
        { ...ref, content: 'x', usage: { ...usage, promptTokens: -1 } },
        'promptTokens must be a non-negative integer',
      ],
      [
        'completed promptTokens float',
        'chat.completed',
        { ...ref, content: 'x', usage: { ...usage, promptTokens: 0.5 } },
        'promptTokens must be a non-negative integer',
      ],
      [
        'completed promptTokens string',
        'chat.completed',
        { ...ref, content: 'x', usage: { ...usage, promptTokens: '3' } },
        'promptTokens must be a non-negative integer',
      ],
      [
        'completed completionTokens negative',
        'chat.completed',
        { ...ref, content: 'x', usage: { ...usage, completionTokens: -5 } },
        'completionTokens must be a non-negative integer',
      ],
      [
        'completed completionTokens float',
        'chat.completed',
        { ...ref, content: 'x', usage: { ...usage, completionTokens: 2.25 } },
        'completionTokens must be a non-negative integer',
      ],
      [
        'completed completionTokens missing',
        'chat.completed',
        { ...ref, content: 'x', usage: { promptTokens: 1 } },
        'completionTokens must be a non-negative integer',
      ],
      ['failed error missing', 'chat.failed', { ...ref }, 'error must be an object'],
      ['failed error string', 'chat.failed', { ...ref, error: 'boom' }, 'error must be an object'],
      ['failed error null', 'chat.failed', { ...ref, error: null }, 'error must be an object'],
      ['failed error code missing', 'chat.failed', { ...ref, error: { message: 'm' } }, 'error code must be a string'],
      ['failed error code number', 'chat.failed', { ...ref, error: { code: 500, message: 'm' } }, 'error code must be a string'],
      ['failed error message missing', 'chat.failed', { ...ref, error: { code: 'c' } }, 'error message must be a string'],
      ['cancelled messageId missing', 'chat.cancelled', { sessionId: SID }, 'messageId must be an id'],
      ['cancelled sessionId missing', 'chat.cancelled', { messageId: MID }, 'sessionId must be an id'],
      [
        'status state unknown',
        'chat.status',
        { ...ref, state: 'sleeping', detail: 'x' },
        'state must be one of queued, waiting_for_model, retrying',
      ],
      ['status detail missing', 'chat.status', { ...ref, state: 'queued' }, 'detail must be a string'],
      ['status ahead negative', 'chat.status', { ...ref, state: 'queued', detail: 'x', ahead: -1 }, 'ahead must be a non-negative integer'],
    ];
    it.each(cases)('%s', (_name, type, data, reason) => {
      expectFailure(decodeEvent(fields(type, data)), `${type}: `, reason);
    });

    it('rejects NaN and Infinity usage, which JSON turns into null', () => {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const payload = { ...ref, content: 'x', usage: { promptTokens: bad, completionTokens: 1 } };
        expectFailure(decodeEvent(encodeEnvelope('chat.completed', payload)), 'promptTokens must be a non-negative integer');
      }
    });

    it('accepts a large integer token count and attempt 0', () => {
      const payload = { ...ref, content: 'x', usage: { promptTokens: 2 ** 40, completionTokens: 0 } };
      expect(decodeEvent(fields('chat.completed', payload)).ok).toBe(true);
      expect(decodeEvent(fields('chat.started', { ...ref, attempt: 0 })).ok).toBe(true);
    });
  });

  describe('never throws', () => {
    const junk: unknown[][] = [
      [],
      ['v'],
      ['v', '1'],
      ['v', '1', 'type'],
      ['v', '1', 'type', 'chat.delta', 'data', '\u0000'],
      ['v', '1', 'type', 'chat.delta', 'data', '{"__proto__":{"sessionId":"x"}}'],
      ['v', '1', 'type', 'chat.delta', 'data', JSON.stringify({ sessionId: { toString: 'x' }, messageId: MID, delta: 'x' })],
      ['v', '1', 'type', 'chat.completed', 'data', JSON.stringify({ ...ref, content: 'x', usage: [] })],
      ['v', '1', 'type', 'chat.failed', 'data', JSON.stringify({ ...ref, error: [] })],
      ['v', '1', 'type', 'chat.generate', 'data', '1e999'],
    ];
    it.each(junk.map((j) => [JSON.stringify(j), j] as const))('%s', (_name, raw) => {
      const asFields = raw as string[];
      expect(() => decodeEvent(asFields)).not.toThrow();
      expect(() => decodeCommand(asFields)).not.toThrow();
      expect(decodeEvent(asFields).ok).toBe(false);
      expect(decodeCommand(asFields).ok).toBe(false);
    });
  });
});
