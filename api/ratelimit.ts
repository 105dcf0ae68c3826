/**
 * Rate limits of the API service (issue 16): token buckets per identity (the verified token's subject; a caller without
 * a valid token is counted by its address) and per tenant (every caller acting on it together). The CLI and the
 * console call the same service with the same identity, so they share one bucket. A request over a limit answers
 * RATE_LIMITED (HTTP 429) with `Retry-After`, before authorisation (DESIGN.md §4's order of checks).
 */
import { CmkError } from '../common/errors';
import { DEFAULT_RATE_LIMITS, type RateLimit, type RateLimitConfig } from '../config';

/** A refusal that says when to come back: the API sends `Retry-After` (whole seconds) with it. */
export class RateLimitedError extends CmkError {
  constructor(
    readonly retryAfterSeconds: number,
    message: string,
  ) {
    super('RATE_LIMITED', message);
  }
}

/** Past this many buckets, full ones (callers idle long enough to have refilled) are dropped: memory stays bounded. */
const SWEEP_ABOVE = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

class Buckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {}

  /** Takes one token for `key`; the whole seconds until one is available when the bucket is empty, else 0. */
  take(key: string): number {
    if (this.limit.perSecond <= 0) return 0;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond);
    bucket.at = now;
    if (!this.buckets.has(key)) {
      if (this.buckets.size >= SWEEP_ABOVE) this.sweep(now);
      this.buckets.set(key, bucket);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.limit.perSecond));
  }

  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(key);
    }
  }
}

export class RateLimiter {
  private readonly identities: Buckets;
  private readonly tenants: Buckets;

  constructor(config: RateLimitConfig = DEFAULT_RATE_LIMITS, now: () => number = Date.now) {
    this.identities = new Buckets(config.identity, now);
    this.tenants = new Buckets(config.tenant, now);
  }

  /** One request by a verified identity (`user:…`, `operator`) or, without one, from an address (`address:…`). */
  charge(caller: string): void {
    const wait = this.identities.take(caller);
    if (wait > 0) throw new RateLimitedError(wait, `Too many requests from you; try again in ${wait} s.`);
  }

  /** One request on a tenant, whoever makes it. */
  chargeTenant(tenant: string): void {
    const wait = this.tenants.take(tenant);
    if (wait > 0) throw new RateLimitedError(wait, `Too many requests for tenant ${tenant}; try again in ${wait} s.`);
  }
}
