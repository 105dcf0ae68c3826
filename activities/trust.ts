/**
 * What workflows trust comes from their worker's own configuration, never from a request (DESIGN.md §6): the public
 * keys that verify signed requests and the deployment's durations. Read by each run at its start (a local activity).
 */
import type { RequestTrust } from '../domain/signed';

export function createTrustActivities({ requestTrust }: { requestTrust: RequestTrust }) {
  return {
    async requestTrust(): Promise<RequestTrust> {
      return requestTrust;
    },
  };
}
