import { Controller, Get, Headers, Res, UnauthorizedException } from '@nestjs/common';
import type { Response } from 'express';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { AppConfig } from '../config/app-config';
import { metricsAccessAllowed } from './metrics-token';
import { Metrics } from './metrics.service';

@ApiTags('operations')
@Controller('metrics')
export class MetricsController {
  constructor(
    private readonly metrics: Metrics,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({
    summary: 'Prometheus metrics of this process (and its in-process worker)',
    description: 'With METRICS_TOKEN set, requires `Authorization: Bearer <METRICS_TOKEN>`.',
  })
  @ApiProduces('text/plain')
  scrape(@Headers('authorization') authorization: string | undefined, @Res({ passthrough: true }) res: Response): Promise<string> {
    if (!metricsAccessAllowed(this.config.http.metricsToken, authorization)) {
      throw new UnauthorizedException('metrics require Authorization: Bearer <METRICS_TOKEN>');
    }
    // Set here, not with @Header: that would also label the JSON of a refusal as text.
    res.setHeader('Content-Type', this.metrics.registry.contentType);
    return this.metrics.registry.metrics();
  }
}
