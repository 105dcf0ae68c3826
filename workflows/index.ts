export { tenantWorkflow } from './tenant';
