/**
 * Failure messages and stack traces go into an encoded attributes payload, so the payload codec encrypts them
 * too (a refusal's sentence may name tenants and environments). Loaded by path: workflows run it in their sandbox.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
