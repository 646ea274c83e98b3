import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { Server, ServerOptions } from 'socket.io';
import { AppConfig } from '../config/app-config';

/** Socket.IO with the service's CORS origins and a capped message size. */
export class ConfiguredIoAdapter extends IoAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly config: AppConfig,
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const origins = this.config.http.corsOrigins;
    const configured: Partial<ServerOptions> = {
      ...options,
      // A message can be MAX_MESSAGE_CHARS characters of up to 4 bytes, plus the envelope.
      maxHttpBufferSize: this.config.limits.maxMessageChars * 4 + 16 * 1024,
      ...(origins ? { cors: { origin: origins, credentials: true } } : {}),
    };
    // IoAdapter fills in the defaults for whatever is left out.
    return super.createIOServer(port, configured as ServerOptions) as Server;
  }
}
