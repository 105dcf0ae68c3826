/**
 * The signatures of requests a tenant's workflow has accepted, kept while they are young enough to pass the age check
 * (DESIGN.md §6: a captured request does not work twice). They cross continue-as-new with the tenant's state, whose
 * payload may not pass 2 MB, so each is kept small and the oldest are dropped first: at the API's rate limit for one
 * tenant (30 requests a second) for the whole window, about 0.75 MB. Kept whole, with ISO times and twice the
 * window, they took 160 bytes each: 10,000 applies in a quarter of an hour filled the payload and the tenant's next
 * continue-as-new failed on every attempt (issue 20). Pure and deterministic: the workflows run it.
 */
import { REQUEST_MAX_AGE_MS, type RequestAuth } from './signed';

/**
 * Hex characters kept of a signature: its first 12 bytes, all of R, which the signer derives from the message and its
 * key. Two different requests share them with odds of about 2^-96 each; the same request's signature always does.
 */
export const SPENT_SIGNATURE_HEX = 24;

/**
 * How long after its signing a spent signature is kept: the age check refuses it from REQUEST_MAX_AGE_MS on, by
 * the same workflow clock; a minute more for the whole seconds kept.
 */
export const SPENT_RETENTION_MS = REQUEST_MAX_AGE_MS + 60_000;

/** As carried across continue-as-new: signature prefix → signing time in whole seconds since the epoch, oldest first. */
export type SpentSignatures = Record<string, number>;

const keyOf = (signature: string): string => signature.slice(0, SPENT_SIGNATURE_HEX);

/**
 * The ledger while a run holds it: a Map in the order signatures were accepted, so that forgetting the oldest stops
 * at the first one still young — a request's cost does not grow with the ledger (a plain object's keys are listed
 * whole on every walk: 36,000 requests took 79 s). One accepted out of order is only kept a little longer.
 */
export class SpentLedger {
  private readonly seconds: Map<string, number>;

  /** From the carried form, and from the form runs before the compaction carried (whole signature → ISO time). */
  constructor(carried: SpentSignatures = {}, legacy: Record<string, string> = {}) {
    const adopted = Object.entries(legacy)
      .map(([signature, signedAt]) => [keyOf(signature), Math.floor(Date.parse(signedAt) / 1000)] as const)
      .filter(([, seconds]) => Number.isFinite(seconds));
    this.seconds = new Map([...adopted, ...Object.entries(carried)].sort(([, a], [, b]) => a - b));
  }

  isSpent(signature: string): boolean {
    return this.seconds.has(keyOf(signature));
  }

  /** Spends an accepted request's signature, and forgets those the age check now refuses by itself. */
  spend(auth: RequestAuth, now: number): void {
    for (const [key, seconds] of this.seconds) {
      if (seconds * 1000 >= now - SPENT_RETENTION_MS) break;
      this.seconds.delete(key);
    }
    this.seconds.set(keyOf(auth.signature), Math.floor(Date.parse(auth.signedAt) / 1000));
  }

  get size(): number {
    return this.seconds.size;
  }

  /** The form carried across continue-as-new (object keys keep their insertion order; these are never array indexes). */
  carried(): SpentSignatures {
    return Object.fromEntries(this.seconds);
  }
}
