/**
 * Exports Lowkey Vault's TLS certificate as PEM, for NODE_EXTRA_CA_CERTS (docker-compose.yml's lowkey-vault-ca job):
 * the cmk services then verify the vault's HTTPS like any other, instead of turning certificate checks off.
 *
 *   node --import tsx scripts/lowkey-vault-ca.ts http://lowkey-vault:8080 /run/cmk/lowkey-vault-ca/lowkey-vault.pem
 *
 * Lowkey Vault serves its default PKCS#12 keystore and that keystore's password on its HTTP metadata port
 * (`/metadata/default-cert/lowkey-vault.p12`, `/metadata/default-cert/password`). Only the certificates are written,
 * never the private key. The download is plain HTTP on the compose network: trust on first use, acceptable for an
 * emulator and nothing else (docs/DEPLOY.md).
 */
import { writeFileSync, renameSync } from 'node:fs';
import forge from 'node-forge';

async function get(url: string): Promise<Buffer> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

/** The certificates (PEM, concatenated) of a PKCS#12 keystore. */
export function certificatesOf(keystore: Buffer, password: string): string {
  const p12 = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(keystore.toString('binary')), false, password);
  const certBag = forge.pki.oids.certBag as string;
  const bags: forge.pkcs12.Bag[] = p12.getBags({ bagType: certBag })[certBag] ?? [];
  const pems = bags.flatMap((bag) => (bag.cert ? [forge.pki.certificateToPem(bag.cert)] : []));
  if (pems.length === 0) throw new Error('the keystore holds no certificate');
  return pems.join('');
}

export async function exportLowkeyVaultCertificate(metadataUrl: string, outPath: string): Promise<string> {
  const base = metadataUrl.replace(/\/+$/, '');
  const password = (await get(`${base}/metadata/default-cert/password`)).toString('utf8').trim();
  const pem = certificatesOf(await get(`${base}/metadata/default-cert/lowkey-vault.p12`), password);
  const temp = `${outPath}.tmp`;
  writeFileSync(temp, pem, { mode: 0o644 });
  renameSync(temp, outPath);
  return pem;
}

if (require.main === module) {
  const [metadataUrl, outPath] = process.argv.slice(2);
  if (!metadataUrl || !outPath) {
    console.error('usage: lowkey-vault-ca.ts <metadata base URL, e.g. http://lowkey-vault:8080> <output .pem>');
    process.exit(2);
  }
  exportLowkeyVaultCertificate(metadataUrl, outPath).then(
    () => console.error(`cmk: Lowkey Vault's certificate written to ${outPath}`),
    (err: unknown) => {
      console.error(`cmk: cannot export Lowkey Vault's certificate: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
