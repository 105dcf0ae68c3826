/**
 * The OpenAPI 3.1 document of the API service: @fastify/swagger builds it from the route table's schemas
 * (api/server.ts, api/schemas.ts), so it cannot drift. This module gives the parts no route carries.
 */
import type { SwaggerOptions } from '@fastify/swagger';
import { ErrorDocument } from './schemas';

export const openApiOptions: SwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: { title: 'cmk API service', version: '1', description: 'Customer-managed encryption keys: the control plane the `cmk` CLI calls.' },
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: ErrorDocument },
    },
  },
};
