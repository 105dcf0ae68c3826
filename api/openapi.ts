/** The OpenAPI 3.1 document of the API service, built from the route table (api/server.ts) so it cannot drift. */
import { ERROR_CODES, httpStatusOf } from '../domain/codes';
import type { Route } from './route';

export function openApiDocument(routes: Route[]) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } }));
    const fields = Object.entries(route.body ?? {});
    const requestBody = fields.length
      ? {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: fields.filter(([name]) => !name.endsWith('?')).map(([name]) => name),
                properties: Object.fromEntries(fields.map(([name, description]) => [name.replace(/\?$/, ''), { description }])),
              },
            },
          },
        }
      : undefined;
    (paths[route.path] ??= {})[route.method.toLowerCase()] = {
      summary: route.summary,
      ...(route.public ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses: {
        '200': { description: 'Done', content: { 'application/json': {} } },
        default: { description: 'Refused: {error:{code,message}}', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'cmk API service', version: '1', description: 'Customer-managed encryption keys: the control plane the `cmk` CLI calls.' },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { enum: [...ERROR_CODES, 'INTERNAL'], description: ERROR_CODES.map((c) => `${c}: HTTP ${httpStatusOf(c)}`).join('; ') }, message: { type: 'string' } },
            },
          },
        },
      },
    },
  };
}
