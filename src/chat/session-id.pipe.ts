import { BadRequestException, PipeTransform } from '@nestjs/common';
import { isValidId } from '../event-bus/stream-names';

/** Route ids are checked before they can reach a Redis key. */
export class IdParamPipe implements PipeTransform<unknown, string> {
  constructor(private readonly name: string) {}

  transform(value: unknown): string {
    if (!isValidId(value)) throw new BadRequestException(`${this.name} must be 1-64 characters of A-Z, a-z, 0-9, _ or -`);
    return value;
  }
}
