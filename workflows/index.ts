export { tenantWorkflow } from './tenant';
export { purgeLockedEnvironmentsWorkflow } from './purge';
