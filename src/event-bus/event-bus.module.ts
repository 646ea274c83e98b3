import { Module } from '@nestjs/common';
import { EventBus } from './event-bus.service';
import { RedisConnections } from './redis-connections';
import { SessionEventLog } from './session-event-log';
import { WorkerGroup } from './worker-group';

/** Redis connections and the Redis Streams bus (chat:incoming, chat:outgoing, chat:dead). */
@Module({
  providers: [RedisConnections, EventBus, WorkerGroup, SessionEventLog],
  exports: [RedisConnections, EventBus, WorkerGroup, SessionEventLog],
})
export class EventBusModule {}
