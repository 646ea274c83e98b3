import { validatePayload } from '../../app/validation';
import { SendMessageDto } from './send-message.dto';

describe('SendMessageDto', () => {
  it('accepts a minimal valid body', async () => {
    const r = await validatePayload(SendMessageDto, { sessionId: 'abc', content: 'hi' });
    expect(r.ok).toBe(true);
  });
});
