export { tenantWorkflow } from './tenant';
export { purgeLockedEnvironmentsWorkflow } from './purge';
export { auditTrailWorkflow } from './audit';
export { mailRetryWorkflow } from './mail';
export { driftCheckWorkflow } from './drift';
