/**
 * The typed client library as a package (`import { ControlPlane } from 'cmk'`, package.json `exports`): what another
 * TypeScript API layer needs to drive the control plane's workflows as the API service does — the control plane, the
 * request signer and data converter it must use (the workflows accept only signed requests and encrypted payloads),
 * the request and result types, the rules' types and the error codes. Built by `npm run build:client` into dist/.
 */
export { ControlPlane, asRefusal } from './library';
export { RequestSigner, loadRequestSigner } from '../common/request-signing';
export { dataConverterFor, loadCodecKeyRing, loadDataConverter, type CodecKeyRing } from '../codec';
export { CmkError, isCmkError } from '../common/errors';
export { ERROR_CODES, isErrorCode, type ErrorCode } from '../domain/codes';
export { OPERATOR, type Action, type Actor } from '../domain/access';
export type { AdminRole, Administrator, EnvironmentRecord, EnvironmentState, KeyState, Protection, TenantKey, TenantSnapshot } from '../domain/model';
export { DEFAULT_POLICY, type Policy } from '../domain/policy';
export type { PossessionProof, TenantCreateCheck } from '../domain/rules';
export {
  TASK_QUEUE,
  tenantWorkflowId,
  type AdminChangeRequest,
  type AdminChangeResult,
  type BackupRequest,
  type BackupResult,
  type EnvironmentCreateRequest,
  type EnvironmentOperationRequest,
  type EnvironmentScope,
  type KeyChangeRequest,
  type KeyChangeResult,
  type LockPossession,
  type LockRequest,
  type LockResult,
  type ReactivateRequest,
  type RollbackRequest,
  type RollbackResult,
  type StagedKey,
  type UnlockRequest,
} from '../workflows/messages';
