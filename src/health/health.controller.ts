import { Controller, Get, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { AI_PROVIDER, AiProvider } from '../ai/providers/ai-provider';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from '../event-bus/redis-connections';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly redis: RedisConnections,
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @HealthCheck()
  @ApiOperation({
    summary: 'Readiness: 200 when Redis and the AI provider (Ollama reachable, model pulled) are usable, else 503',
    description: "Each dependency's state and a sentence; internal addresses and model details only with HEALTH_DETAILS=true.",
  })
  ready() {
    return this.health.check([() => this.checkRedis(), () => this.checkAi()]);
  }

  @Get('live')
  @HealthCheck()
  @ApiOperation({ summary: 'Liveness: 200 while the process serves requests' })
  live() {
    return this.health.check([]);
  }

  private checkRedis() {
    return this.indicators
      .check('redis')
      .attempt(async () => {
        await this.redis.commands.ping();
        // On a cluster: its own verdict (a failover in progress says `fail`), not one node's PING.
        const state = await this.redis.clusterState();
        if (state === null) return;
        if (state !== 'ok') throw new Error(`Redis Cluster state is ${state}`);
        return { cluster_state: state };
      })
      .withTimeout(1500);
  }

  private async checkAi() {
    const indicator = this.indicators.check('ai');
    const result = await this.provider.health();
    // The provider's address and the like are for operators: public callers get the state and a sentence.
    const details = this.config.http.healthDetails ? result.details : {};
    const data = { provider: this.provider.name, message: result.message, ...details };
    return result.ok ? indicator.up(data) : indicator.down(data);
  }
}
