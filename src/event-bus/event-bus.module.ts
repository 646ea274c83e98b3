import { Module } from '@nestjs/common';
import { EventBus } from './event-bus.service';
import { RedisConnections } from './redis-connections';

/** Redis connections and the Redis Streams bus (chat:incoming, chat:outgoing, chat:dead). */
@Module({
  providers: [RedisConnections, EventBus],
  exports: [RedisConnections, EventBus],
})
export class EventBusModule {}
