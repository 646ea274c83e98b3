import { BadRequestException, ValidationError, ValidationPipe, ValidationPipeOptions } from '@nestjs/common';
import { plainToInstance } from 'class-transformer';
import { validate } from 'class-validator';

/** The same rules for HTTP bodies and socket payloads: unknown fields rejected, types checked. */
export const VALIDATION_OPTIONS = {
  whitelist: true,
  forbidNonWhitelisted: true,
  forbidUnknownValues: true,
} as const satisfies ValidationPipeOptions;

/** One readable sentence naming every bad field. */
export function describeValidationErrors(errors: ValidationError[], parent = ''): string {
  const parts: string[] = [];
  for (const error of errors) {
    const path = parent ? `${parent}.${error.property}` : error.property;
    if (error.constraints) parts.push(...Object.values(error.constraints));
    if (error.children?.length) parts.push(describeValidationErrors(error.children, path));
  }
  return parts.join('; ') || 'invalid input';
}

export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    ...VALIDATION_OPTIONS,
    transform: true,
    exceptionFactory: (errors) => new BadRequestException(describeValidationErrors(errors)),
  });
}

export type Validated<T> = { ok: true; value: T } | { ok: false; message: string };

/** Validates a socket payload exactly like the pipe validates an HTTP body. */
export async function validatePayload<T extends object>(cls: new () => T, raw: unknown): Promise<Validated<T>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, message: 'payload must be a JSON object' };
  const instance = plainToInstance(cls, raw);
  const errors = await validate(instance, VALIDATION_OPTIONS);
  return errors.length ? { ok: false, message: describeValidationErrors(errors) } : { ok: true, value: instance };
}
