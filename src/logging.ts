import { ConsoleLogger, LogLevel } from '@nestjs/common';
import { AppConfig } from './config/app-config';

const LEVELS: Record<AppConfig['logLevel'], LogLevel[]> = {
  debug: ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'],
  info: ['fatal', 'error', 'warn', 'log'],
  warn: ['fatal', 'error', 'warn'],
  error: ['fatal', 'error'],
};

/** The process logger for LOG_LEVEL; installed once the config has been validated. */
export function createLogger(level: AppConfig['logLevel']): ConsoleLogger {
  return new ConsoleLogger({ logLevels: LEVELS[level], timestamp: true });
}
