import { Module } from '@nestjs/common';
import { EventBus } from './event-bus.service';
import { RedisConnections } from './redis-connections';
import { WorkerGroup } from './worker-group';

/** Redis connections and the Redis Streams bus (chat:incoming, chat:outgoing, chat:dead). */
@Module({
  providers: [RedisConnections, EventBus, WorkerGroup],
  exports: [RedisConnections, EventBus, WorkerGroup],
})
export class EventBusModule {}
