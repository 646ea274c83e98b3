import { SetMetadata } from '@nestjs/common';

export const ALLOW_QUERY_TOKEN = 'auth:allow-query-token';

/**
 * Marks a route whose clients cannot send an Authorization header (a browser's EventSource): only
 * there is the token accepted as `?token=`. Everywhere else a query token would end up in access
 * logs and browser history for nothing.
 */
export const AllowQueryToken = (): MethodDecorator => SetMetadata(ALLOW_QUERY_TOKEN, true);
