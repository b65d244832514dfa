/* Why this file exists: loadgen gets one core (CPU 1) while the server gets the other, so
 * a full TLS handshake must cost the client less than it costs the server, or the figures
 * measure loadgen. With Debian 12's OpenSSL 3.0 it does not: parsing the server's
 * certificate takes ~0.4 ms, almost all of it in OSSL_DECODER_CTX_new_for_pkey() walking
 * every provider decoder for the SubjectPublicKeyInfo (3.2 added a cache; 3.0 has none),
 * and verifying the chain against the CA another ~0.1 ms — against ~0.05 ms for an
 * ECDSA P-256 signature on the server.
 *
 * 1. x509_pubkey_decode() in 3.0 takes the old, direct ameth->pub_decode path when an
 *    ENGINE is registered for the key type. We register one that supplies OpenSSL's own
 *    built-in legacy EVP_PKEY_METHODs for RSA and EC (no foreign code), so the certificate
 *    parses ~10x faster and its signature checks run in the same well-tested legacy code.
 *    X25519 is not registered: key shares keep the provider path.
 * 2. The server presents the same certificate on every connection: its chain is verified
 *    once, then recognised (X509_cmp: SHA-1 of the DER, then the DER itself).
 *
 * Both are off the server's path entirely; they only make the client cheaper. If the
 * ENGINE cannot be set up, loadgen works as before, only slower (it says so). */
#define OPENSSL_SUPPRESS_DEPRECATED /* the ENGINE API is deprecated in 3.0, not gone */
#include "tlsfast.h"

#include <openssl/engine.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static const int legacy_nids[] = {NID_rsaEncryption, NID_X9_62_id_ecPublicKey};
#define NLEGACY ((int)(sizeof(legacy_nids) / sizeof(legacy_nids[0])))

static int
pkey_meths(ENGINE *e, EVP_PKEY_METHOD **meth, const int **nids, int nid)
{
	(void)e;
	if (meth == NULL) {
		*nids = legacy_nids;
		return NLEGACY;
	}
	*meth = NULL;
	for (int i = 0; i < NLEGACY; i++)
		if (nid == legacy_nids[i])
			*meth = (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(nid);
	return *meth != NULL;
}

int
tlsfast_legacy_pubkeys(void)
{
	ENGINE *e = ENGINE_new(), *got;

	if (e == NULL)
		return -1;
	if (!ENGINE_set_id(e, "loadgen-legacy-pubkeys") ||
	    !ENGINE_set_name(e, "built-in legacy RSA/EC methods") ||
	    !ENGINE_set_pkey_meths(e, pkey_meths) || !ENGINE_register_pkey_meths(e)) {
		ENGINE_free(e);
		return -1;
	}
	/* Kept for the life of the process: the registration table does not take a
	 * reference of its own. */
	got = ENGINE_get_pkey_meth_engine(NID_rsaEncryption);
	if (got == NULL)
		return -1;
	ENGINE_finish(got);
	return 0;
}

static X509 *verified; /* the leaf whose chain verified last */

static int
verify_cb(X509_STORE_CTX *x, void *arg)
{
	X509 *leaf = X509_STORE_CTX_get0_cert(x);

	if (arg == NULL)
		return 1; /* no CA: nothing to build a chain to */
	if (verified != NULL && leaf != NULL && X509_cmp(leaf, verified) == 0) {
		X509_STORE_CTX_set_error(x, X509_V_OK);
		return 1;
	}
	int ok = X509_verify_cert(x);
	if (ok == 1 && leaf != NULL && X509_up_ref(leaf)) {
		X509_free(verified);
		verified = leaf;
	}
	return ok > 0;
}

void
tlsfast_verify_cache(SSL_CTX *ctx, int have_ca)
{
	/* Any non-NULL arg means "verify"; the callback keeps no other state in it. */
	SSL_CTX_set_cert_verify_callback(ctx, verify_cb, have_ca ? (void *)ctx : NULL);
}
