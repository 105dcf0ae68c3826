/**
 * `npm run codec:rotate`: adds the next payload codec key to CMK_SECRETS_DIR. Restart the worker and the API service
 * (`npm start` again) to encrypt with it; payloads written under earlier keys still decrypt as long as their keys stay.
 */
import { loadConfig } from '../config';
import { addCodecKey } from '../codec';

const config = loadConfig();
if (process.env.CMK_CODEC_KEYS) {
  console.error('cmk: CMK_CODEC_KEYS is set, so the keys come from the environment: add the next "N:<base64>" entry there instead.');
  process.exit(2);
}
const id = addCodecKey(config.secretsDir);
console.log(`cmk: payload codec key ${id} added in ${config.secretsDir}; restart the worker and the API service to encrypt with it.`);
