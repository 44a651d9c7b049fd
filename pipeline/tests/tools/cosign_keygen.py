#!/usr/bin/env python3
"""Makes a cosign key pair with an implementation independent of ours.

The key format is cosign's (as pipeline/src/cosign/keys.rs describes it):
PEM `ENCRYPTED SIGSTORE PRIVATE KEY` whose body is JSON
{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
 "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"},
the ciphertext sealing the PKCS#8 DER of an ECDSA P-256 key with the
32-byte scrypt key of the password. Here the pieces come from PyPI's
`cryptography` (the key, PKCS#8, SPKI, ECDSA), Python's hashlib (scrypt)
and `pynacl` (libsodium's secretbox), so a test that reads these files
checks our reader against other code, not against itself.

    cosign_keygen.py PREFIX MESSAGE_FILE

Password from COSIGN_PASSWORD (may be empty). Writes PREFIX.key,
PREFIX.pub (SPKI PEM) and PREFIX.sig (DER ECDSA-SHA256 signature of
MESSAGE_FILE's bytes, base64).
"""
import base64
import hashlib
import json
import os
import sys

import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# cosign's cost today: N = 2^16, r = 8, p = 1.
N, R, P = 1 << 16, 8, 1


def pem(label, body):
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    prefix, message_file = sys.argv[1], sys.argv[2]
    password = os.environ.get("COSIGN_PASSWORD")
    if password is None:
        sys.exit("COSIGN_PASSWORD is not set")
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = nacl.utils.random(32)
    secret = hashlib.scrypt(
        password.encode(), salt=salt, n=N, r=R, p=P, dklen=32, maxmem=256 << 20
    )
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce)
    body = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": N, "r": R, "p": P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    with open(prefix + ".key", "w") as f:
        f.write(pem("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(body).encode()))
    with open(prefix + ".pub", "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
    with open(message_file, "rb") as f:
        signature = key.sign(f.read(), ec.ECDSA(hashes.SHA256()))
    with open(prefix + ".sig", "w") as f:
        f.write(base64.b64encode(signature).decode() + "\n")


if __name__ == "__main__":
    main()
