import { io, Socket } from 'socket.io-client';

/** A socket to `namespace` over WebSocket that never reconnects by itself. */
export function chatSocket(baseUrl: string, namespace = '/chat', auth?: Record<string, unknown>, headers?: Record<string, string>): Socket {
  return io(`${baseUrl}${namespace}`, {
    ...(auth ? { auth } : {}),
    ...(headers ? { extraHeaders: headers } : {}),
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
}

/** Resolves 'connected', the connect_error message, or 'no answer' after 5 s. */
export function handshake(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no answer'), 5000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve('connected');
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      resolve(err.message);
    });
  });
}

/** Opens a /chat socket with `auth`, waits for the handshake's outcome (see `handshake`), closes it. */
export async function handshakeOutcome(baseUrl: string, auth: Record<string, unknown> | undefined): Promise<string> {
  const socket = chatSocket(baseUrl, '/chat', auth);
  try {
    return await handshake(socket);
  } finally {
    socket.close();
  }
}
