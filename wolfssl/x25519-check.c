/* wolfssl/x25519-check.c: checks the bundled wolfSSL's X25519 key generation.
 *
 * wolfssl/patches/0001-curve25519-make-pub-ed25519-base.patch makes
 * wc_curve25519_make_pub() (and so wc_curve25519_make_key(), which TLS uses for
 * its key share) compute the public key with the Ed25519 fixed-base comb instead
 * of the Montgomery ladder. wolfssl/build.sh builds and runs this program against
 * the new library before installing it, and fails the build if:
 *
 *   - the RFC 7748 section 6.1 vectors (Alice's and Bob's public keys, the shared
 *     secret both ways) do not come out;
 *   - for edge-case scalars and N random keys (default 4096), the public key from
 *     wc_curve25519_make_pub() / wc_curve25519_make_key() differs from the one the
 *     unchanged ladder gives: wc_curve25519_generic() with the base point u = 9;
 *   - wc_curve25519_make_pub() accepts a private key that is not clamped.
 *
 * Usage: x25519-check [N]          check, N random keys
 *        x25519-check --dump N     print N "private public" hex lines (little-endian,
 *                                  from wc_curve25519_make_key) to compare elsewhere
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KS CURVE25519_KEYSIZE

static int failures;

static void
fail(const char *what, const byte *priv, const byte *got, const byte *want)
{
	int i;

	/* The first few in detail, then only the count. */
	if (++failures > 20)
		return;
	fprintf(stderr, "x25519-check: FAIL %s\n", what);
	if (priv) {
		fprintf(stderr, "  private ");
		for (i = 0; i < KS; i++)
			fprintf(stderr, "%02x", priv[i]);
		fprintf(stderr, "\n");
	}
	if (got && want) {
		fprintf(stderr, "  got     ");
		for (i = 0; i < KS; i++)
			fprintf(stderr, "%02x", got[i]);
		fprintf(stderr, "\n  want    ");
		for (i = 0; i < KS; i++)
			fprintf(stderr, "%02x", want[i]);
		fprintf(stderr, "\n");
	}
}

static void
unhex(const char *s, byte *out)
{
	int i;

	for (i = 0; i < KS; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "x25519-check: bad hex constant\n");
			exit(2);
		}
		out[i] = (byte)v;
	}
}

static void
clamp(byte *k)
{
	k[0] &= 248;
	k[KS - 1] &= 127;
	k[KS - 1] |= 64;
}

/* The public key of priv by the (unpatched) Montgomery ladder. */
static int
ladder_pub(const byte *priv, byte *pub)
{
	static const byte basepoint[KS] = {9};

	return wc_curve25519_generic(KS, pub, KS, priv, KS, basepoint);
}

/* wc_curve25519_make_pub() against the ladder for one (clamp-checked) scalar. */
static void
check_scalar(const char *what, const byte *priv)
{
	byte fast[KS], slow[KS];
	int r1, r2;

	r1 = wc_curve25519_make_pub(KS, fast, KS, priv);
	r2 = ladder_pub(priv, slow);
	if (r1 != 0 || r2 != 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "%s: make_pub %d, ladder %d", what, r1, r2);
		fail(msg, priv, NULL, NULL);
	} else if (memcmp(fast, slow, KS) != 0) {
		fail(what, priv, fast, slow);
	}
}

static void
rfc7748(void)
{
	/* RFC 7748 section 6.1 (little-endian, private keys as given: unclamped). */
	static const char *a_hex =
	    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
	static const char *a_pub_hex =
	    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
	static const char *b_hex =
	    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
	static const char *b_pub_hex =
	    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
	static const char *k_hex =
	    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
	byte a[KS], b[KS], a_pub[KS], b_pub[KS], k[KS], out[KS];
	curve25519_key ka, kb, pa, pb;
	word32 len;
	int ret;

	unhex(a_hex, a);
	unhex(a_pub_hex, a_pub);
	unhex(b_hex, b);
	unhex(b_pub_hex, b_pub);
	unhex(k_hex, k);

	/* make_pub wants the scalar clamped (X25519() of the RFC clamps internally). */
	clamp(a);
	clamp(b);
	if ((ret = wc_curve25519_make_pub(KS, out, KS, a)) != 0 || memcmp(out, a_pub, KS) != 0)
		fail("RFC 7748 6.1: Alice's public key (make_pub)", a, out, a_pub);
	if ((ret = wc_curve25519_make_pub(KS, out, KS, b)) != 0 || memcmp(out, b_pub, KS) != 0)
		fail("RFC 7748 6.1: Bob's public key (make_pub)", b, out, b_pub);
	if ((ret = ladder_pub(a, out)) != 0 || memcmp(out, a_pub, KS) != 0)
		fail("RFC 7748 6.1: Alice's public key (ladder)", a, out, a_pub);
	if ((ret = ladder_pub(b, out)) != 0 || memcmp(out, b_pub, KS) != 0)
		fail("RFC 7748 6.1: Bob's public key (ladder)", b, out, b_pub);

	/* The shared secret, both ways, from the unclamped private keys as imported. */
	unhex(a_hex, a);
	unhex(b_hex, b);
	wc_curve25519_init(&ka);
	wc_curve25519_init(&kb);
	wc_curve25519_init(&pa);
	wc_curve25519_init(&pb);
	if (wc_curve25519_import_private_ex(a, KS, &ka, EC25519_LITTLE_ENDIAN) != 0 ||
	    wc_curve25519_import_private_ex(b, KS, &kb, EC25519_LITTLE_ENDIAN) != 0 ||
	    wc_curve25519_import_public_ex(a_pub, KS, &pa, EC25519_LITTLE_ENDIAN) != 0 ||
	    wc_curve25519_import_public_ex(b_pub, KS, &pb, EC25519_LITTLE_ENDIAN) != 0) {
		fail("RFC 7748 6.1: key import", NULL, NULL, NULL);
	} else {
		len = KS;
		if (wc_curve25519_shared_secret_ex(&ka, &pb, out, &len, EC25519_LITTLE_ENDIAN) !=
		        0 ||
		    len != KS || memcmp(out, k, KS) != 0)
			fail("RFC 7748 6.1: shared secret a * B_pub", NULL, out, k);
		len = KS;
		if (wc_curve25519_shared_secret_ex(&kb, &pa, out, &len, EC25519_LITTLE_ENDIAN) !=
		        0 ||
		    len != KS || memcmp(out, k, KS) != 0)
			fail("RFC 7748 6.1: shared secret b * A_pub", NULL, out, k);
	}
	wc_curve25519_free(&ka);
	wc_curve25519_free(&kb);
	wc_curve25519_free(&pa);
	wc_curve25519_free(&pb);
}

/* Scalars at the edges of the comb's signed radix-16 recoding and of clamping. The
 * clamp check only asks for bits 0-2 and 255 clear, so bit 254 may be clear too. */
static int
edge_scalars(void)
{
	static const byte fill[] = {0x00, 0xff, 0x88, 0x77, 0x80, 0x08, 0x0f, 0xf0, 0xaa, 0x55};
	byte k[KS];
	char what[64];
	size_t f;
	int bit, n = 0;

	for (f = 0; f < sizeof(fill); f++) {
		int top;
		for (top = 0; top < 4; top++) {
			memset(k, fill[f], KS);
			k[0] &= 248;
			k[KS - 1] &= 127;
			if (top == 1)
				k[KS - 1] |= 64; /* X25519 clamping */
			else if (top == 2)
				k[KS - 1] &= 63; /* bit 254 clear */
			else if (top == 3)
				k[KS - 1] = 0x7f; /* largest top byte */
			snprintf(what, sizeof(what), "edge scalar fill %02x/%d", fill[f], top);
			check_scalar(what, k);
			n++;
		}
	}
	/* 2^bit for each bit the clamp check allows, and 2^bit - 8 (bits 3..bit-1 set). */
	for (bit = 3; bit < 255; bit++) {
		int j;

		memset(k, 0, KS);
		k[bit / 8] = (byte)(1u << (bit % 8));
		snprintf(what, sizeof(what), "edge scalar 2^%d", bit);
		check_scalar(what, k);
		n++;

		if (bit == 3)
			continue;
		memset(k, 0, KS);
		for (j = 3; j < bit; j++)
			k[j / 8] |= (byte)(1u << (j % 8));
		snprintf(what, sizeof(what), "edge scalar 2^%d - 8", bit);
		check_scalar(what, k);
		n++;
	}
	return n;
}

/* make_pub must still refuse a private key that is not clamped. */
static void
clamp_refusal(void)
{
	byte k[KS], out[KS];

	memset(k, 0x42, KS);
	k[0] = 0x41;
	k[KS - 1] = 0x40;
	if (wc_curve25519_make_pub(KS, out, KS, k) != ECC_BAD_ARG_E)
		fail("make_pub accepted a private key with bits 0-2 set", k, NULL, NULL);
	k[0] = 0x40;
	k[KS - 1] = 0xc0;
	if (wc_curve25519_make_pub(KS, out, KS, k) != ECC_BAD_ARG_E)
		fail("make_pub accepted a private key with bit 255 set", k, NULL, NULL);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	WC_RNG rng;
	long n = 4096, i;
	int dump = 0, edges;
	double t0, t_fast = 0, t_ladder = 0;

	if (argc > 1 && strcmp(argv[1], "--dump") == 0) {
		dump = 1;
		argc--;
		argv++;
	}
	if (argc > 1)
		n = strtol(argv[1], NULL, 10);
	if (n < 1 || argc > 2) {
		fprintf(stderr, "usage: x25519-check [--dump] [N]\n");
		return 2;
	}
	if (wc_InitRng(&rng) != 0) {
		fprintf(stderr, "x25519-check: wc_InitRng failed\n");
		return 1;
	}

	if (!dump) {
		rfc7748();
		edges = edge_scalars();
		clamp_refusal();
	} else {
		edges = 0;
	}

	for (i = 0; i < n; i++) {
		curve25519_key key;
		byte priv[KS], pub[KS], slow[KS];
		word32 plen = KS, klen = KS;
		int ret;

		wc_curve25519_init(&key);
		/* Half through make_key (what TLS calls), half through make_priv + make_pub. */
		t0 = now();
		if (i % 2 == 0) {
			ret = wc_curve25519_make_key(&rng, KS, &key);
			if (ret == 0)
				ret = wc_curve25519_export_key_raw_ex(&key, priv, &klen, pub, &plen,
				                                      EC25519_LITTLE_ENDIAN);
		} else {
			ret = wc_curve25519_make_priv(&rng, KS, priv);
			if (ret == 0)
				ret = wc_curve25519_make_pub(KS, pub, KS, priv);
		}
		t_fast += now() - t0;
		wc_curve25519_free(&key);
		if (ret != 0 || klen != KS || plen != KS) {
			fail("key generation failed", NULL, NULL, NULL);
			break;
		}
		if (dump) {
			int j;
			for (j = 0; j < KS; j++)
				printf("%02x", priv[j]);
			putchar(' ');
			for (j = 0; j < KS; j++)
				printf("%02x", pub[j]);
			putchar('\n');
			continue;
		}
		t0 = now();
		ret = ladder_pub(priv, slow);
		t_ladder += now() - t0;
		if (ret != 0 || memcmp(pub, slow, KS) != 0)
			fail("random key: keygen differs from the ladder", priv, pub, slow);
		if (failures > 10)
			break;
	}
	wc_FreeRng(&rng);
	if (dump)
		return failures ? 1 : 0;

	if (failures) {
		fprintf(stderr, "x25519-check: %d failure(s)\n", failures);
		return 1;
	}
	printf("x25519-check: RFC 7748 6.1 vectors OK; %d edge-case and %ld random keys: "
	       "keygen == ladder; unclamped keys refused (keygen %.1f us, ladder %.1f us)\n",
	       edges, n, t_fast / (double)n * 1e6, t_ladder / (double)n * 1e6);
	return 0;
}
