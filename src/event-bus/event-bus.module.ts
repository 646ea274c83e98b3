import { Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { CancelSignals } from './cancel-signals';
import { DeadLetters } from './dead-letters';
import { RedisConnections } from './redis-connections';
import { SessionEventLog } from './session-event-log';
import { KeyLayout } from './stream-names';
import { WorkerGroup } from './worker-group';
import { WorkerRegistry } from './worker-registry';

/** Redis connections, the key layout, and the streams' plumbing shared by the API and the workers. */
@Module({
  providers: [
    RedisConnections,
    { provide: KeyLayout, inject: [AppConfig], useFactory: (config: AppConfig) => new KeyLayout(config.redis.partitions) },
    WorkerGroup,
    WorkerRegistry,
    CancelSignals,
    DeadLetters,
    SessionEventLog,
  ],
  exports: [RedisConnections, KeyLayout, WorkerGroup, WorkerRegistry, CancelSignals, DeadLetters, SessionEventLog],
})
export class EventBusModule {}
