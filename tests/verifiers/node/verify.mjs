// Verifies one sessiongate assertion as a Node app would: the key from the proxy's JWKS
// (jose's createRemoteJWKSet, which refetches on an unknown kid), then the signature, issuer,
// audience and expiry. Prints the claims as JSON; exits 1 with the reason when it fails.
//
//   node verify.mjs <jwks url> <token> <audience>
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, token, audience] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer: 'sessiongate',
    audience,
    algorithms: ['EdDSA', 'ES256'],
  });
  console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
} catch (e) {
  console.error(`refused: ${e.code ?? e.name}: ${e.message}`);
  process.exit(1);
}
