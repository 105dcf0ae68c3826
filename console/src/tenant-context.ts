/**
 * What every page of a tenant is given (pages/tenant.tsx makes it). A module of its own, so that the pages and the
 * layout that shows them do not import each other.
 */
import type { Action } from '../../domain/access';
import type { EnvView, KeyReport, TenantView } from './api';

export interface TenantContext {
  tenant: TenantView;
  region: string;
  user: string;
  /** The region's environments (only the user's own for a system administrator). */
  environments: EnvView[];
  key: KeyReport;
  /** R12 for the signed-in user. */
  can: (action: Action, env?: string) => boolean;
  /** Load the tenant, its key and environments again (after a change). */
  refresh: () => void;
}
