"""Verifies one sessiongate assertion as a Python app would: the key from the proxy's JWKS
(PyJWT's PyJWKClient, which looks the token's kid up in the set), then the signature, issuer,
audience and expiry. Prints the claims as JSON; exits 1 with the reason when it fails.

    /usr/bin/python3 pyjwt_verify.py <jwks url> <token> <audience>
"""
import json
import sys

import jwt

jwks_url, token, audience = sys.argv[1:4]
try:
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer="sessiongate",
    )
except Exception as e:  # every refusal is reported the same way
    print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"header": jwt.get_unverified_header(token), "claims": claims}))
