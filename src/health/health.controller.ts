import { Controller, Get, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { AI_PROVIDER, AiProvider } from '../ai/providers/ai-provider';
import { RedisConnections } from '../event-bus/redis-connections';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly redis: RedisConnections,
    @Inject(AI_PROVIDER) private readonly provider: AiProvider,
  ) {}

  @Get()
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: 200 when Redis and the AI provider (Ollama reachable, model pulled) are usable, else 503' })
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
      })
      .withTimeout(1500);
  }

  private async checkAi() {
    const indicator = this.indicators.check('ai');
    const result = await this.provider.health();
    const data = { provider: this.provider.name, message: result.message, ...result.details };
    return result.ok ? indicator.up(data) : indicator.down(data);
  }
}
