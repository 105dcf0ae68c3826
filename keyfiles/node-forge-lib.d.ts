/**
 * node-forge's shared namespace object (lib/forge.js). Each of its algorithm files (lib/asn1.js, lib/des.js, …) adds
 * itself to this object when loaded, so the console imports the object plus only the files it uses: ~75 KB minified
 * instead of ~310 KB for `import forge from 'node-forge'`, which loads every algorithm forge has.
 */
declare module 'node-forge/lib/forge' {
  import type * as Forge from 'node-forge';
  const forge: typeof Forge;
  export = forge;
}
