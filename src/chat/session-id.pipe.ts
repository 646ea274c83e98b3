import { BadRequestException, PipeTransform } from '@nestjs/common';
import { ID_RULE, isValidId } from '../event-bus/stream-names';

/** Route ids are checked before they can reach a Redis key. */
export class IdParamPipe implements PipeTransform<unknown, string> {
  constructor(private readonly name: string) {}

  transform(value: unknown): string {
    if (!isValidId(value)) throw new BadRequestException(`${this.name} ${ID_RULE}`);
    return value;
  }
}
