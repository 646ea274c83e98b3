import { ArgumentMetadata, BadRequestException, ValidationError, ValidationPipe, ValidationPipeOptions } from '@nestjs/common';
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

/**
 * class-transformer skips the keys `__proto__` and `constructor`, so the unknown-field check would
 * never see them: they are refused here, before the transform.
 */
const HIDDEN_KEYS = ['__proto__', 'constructor'];

export function hiddenKeyProblem(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const found = HIDDEN_KEYS.filter((key) => Object.prototype.hasOwnProperty.call(raw, key));
  return found.length ? found.map((key) => `property ${key} should not exist`).join('; ') : null;
}

/** Payloads are flat objects; anything deeper or wider is refused before class-transformer walks it (recursively). */
const MAX_DEPTH = 4;
const MAX_NODES = 200;

/**
 * Why a payload's shape cannot be valid, or null. Iterative, so a payload nested 100,000 levels deep
 * (which would overflow the stack of the recursive transform and validation) is refused cheaply.
 */
export function shapeProblem(raw: unknown): string | null {
  const pending: [unknown, number][] = [[raw, 1]];
  let nodes = 0;
  while (pending.length) {
    const [value, depth] = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > MAX_DEPTH) return `payload is nested too deeply (at most ${MAX_DEPTH} levels)`;
    for (const child of Object.values(value)) {
      if (++nodes > MAX_NODES) return `payload has too many fields (at most ${MAX_NODES})`;
      pending.push([child, depth + 1]);
    }
  }
  return null;
}

class StrictValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // Only for bodies bound to a DTO class; untyped bodies (socket handlers validate their own) pass.
    const typed = metadata.type === 'body' && metadata.metatype !== undefined && metadata.metatype !== Object;
    const problem = typed ? (shapeProblem(value) ?? hiddenKeyProblem(value)) : null;
    if (problem) throw new BadRequestException(problem);
    return super.transform(value, metadata);
  }
}

export function createValidationPipe(): ValidationPipe {
  return new StrictValidationPipe({
    ...VALIDATION_OPTIONS,
    transform: true,
    exceptionFactory: (errors) => new BadRequestException(describeValidationErrors(errors)),
  });
}

export type Validated<T> = { ok: true; value: T } | { ok: false; message: string };

/** Validates a socket payload exactly like the pipe validates an HTTP body. */
export async function validatePayload<T extends object>(cls: new () => T, raw: unknown): Promise<Validated<T>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, message: 'payload must be a JSON object' };
  const hidden = shapeProblem(raw) ?? hiddenKeyProblem(raw);
  if (hidden) return { ok: false, message: hidden };
  const instance = plainToInstance(cls, raw);
  const errors = await validate(instance, VALIDATION_OPTIONS);
  return errors.length ? { ok: false, message: describeValidationErrors(errors) } : { ok: true, value: instance };
}
