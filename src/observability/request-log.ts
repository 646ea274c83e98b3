import type { LoggerService } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Health probes, scrapes and Socket.IO's own polling would drown the log. */
const QUIET = /^\/(health|metrics|socket\.io)(\/|\?|$)/;

export interface RequestLogLine {
  msg: 'request completed' | 'request aborted';
  method: string;
  /** Without the query string, which may carry a token. */
  path: string;
  statusCode: number;
  ms: number;
}

/**
 * One log line per HTTP request, when it ends: method, path, status and duration, nothing else.
 * It replaces nestjs-pino's pino-http middleware, which builds a child logger with the serialized
 * request and enters an AsyncLocalStorage context for every request (Node then tracks every
 * promise), a large share of the API's CPU per send even with LOG_LEVEL=warn (bench/NOTES.md).
 */
export function requestLog(logger: LoggerService) {
  return (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const url = req.url ?? '/';
    if (QUIET.test(url)) return next();
    const started = process.hrtime.bigint();
    const done = (msg: RequestLogLine['msg']) => () => {
      res.removeListener('finish', completed);
      res.removeListener('close', aborted);
      const line: RequestLogLine = {
        msg,
        method: req.method ?? 'GET',
        path: url.split('?')[0],
        statusCode: res.statusCode,
        ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
      };
      if (res.statusCode >= 500) logger.warn(line);
      else logger.log(line);
    };
    const completed = done('request completed');
    const aborted = done('request aborted');
    res.once('finish', completed);
    res.once('close', aborted);
    next();
  };
}
