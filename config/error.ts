/** A setting that is missing or malformed: the process says which and stops (its own module: every config file throws it). */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
