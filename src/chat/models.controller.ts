import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { ModelCatalog } from '../ai/model-catalog';

class ModelListDto {
  @ApiProperty({ example: 'gpt-oss:20b', description: 'The model a send without `model` gets' })
  default: string;
  @ApiProperty({ example: ['gpt-oss:20b', 'gpt-oss:120b'], description: 'Models a send may name, the default first' })
  models: string[];
  @ApiProperty({ description: 'False when the provider could not be asked: the list is then ALLOWED_MODELS or the default alone' })
  reachable: boolean;
}

@ApiTags('models')
@Controller('models')
export class ModelsController {
  constructor(private readonly catalog: ModelCatalog) {}

  @Get()
  @ApiOperation({ summary: 'Models a send may ask for', description: "The provider's models, filtered by ALLOWED_MODELS when set" })
  @ApiOkResponse({ type: ModelListDto })
  list(): Promise<ModelListDto> {
    return this.catalog.list();
  }
}
