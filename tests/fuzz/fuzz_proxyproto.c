/* libFuzzer target for proxy/proxyproto.c.
 *
 * The whole input is offered to the decoder from a heap copy of exactly its length, so
 * ASan reports any read past len. Then, for what the decoder says:
 *  - a header (> 0): its length is within the input and the limits; the header alone
 *    decodes the same; a proper prefix of it is NEED_MORE (the caller must be able to
 *    wait); re-encoding it as v1 and as v2 (with TLS facts taken from the rest of the
 *    input) decodes back to the same addresses;
 *  - an error: any prefix gives NEED_MORE or that same error (once refused, more bytes
 *    never make it acceptable);
 *  - NEED_MORE: only below PROXYPROTO_MAX_HEADER, as the header promises.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "proxyproto.h"

#define check(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

/* Coverage is for proxy/proxyproto.c, not for the harness's own branches. */
#if defined(__clang__)
#define HARNESS __attribute__((no_sanitize("coverage")))
#else
#define HARNESS
#endif

HARNESS static int
decode_exact(const uint8_t *data, size_t len, struct proxyproto_addrs *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	int r;

	check(copy != NULL);
	if (len)
		memcpy(copy, data, len);
	r = proxyproto_decode(copy, len, out);
	free(copy);
	return r;
}

HARNESS static void
same_addrs(const struct proxyproto_addrs *a, const struct proxyproto_addrs *b)
{
	check(a->local == b->local);
	if (a->local)
		return;
	check(a->src_len == b->src_len && a->dst_len == b->dst_len);
	check(a->src.ss_family == b->src.ss_family && a->dst.ss_family == b->dst.ss_family);
	check(a->src_len > 0 && (size_t)a->src_len <= sizeof(a->src));
	check(memcmp(&a->src, &b->src, a->src_len) == 0);
	check(memcmp(&a->dst, &b->dst, a->dst_len) == 0);
}

/* Up to four short strings from the input, so that the encoder's TLV paths run too. */
HARNESS static void
tls_from(const uint8_t *p, size_t n, char str[4][65], struct proxyproto_tls *tls)
{
	size_t i, j;

	memset(tls, 0, sizeof(*tls));
	for (i = 0; i < 4; i++) {
		for (j = 0; j < 64 && j < n && p[j] != 0; j++)
			str[i][j] = (char)p[j];
		str[i][j] = '\0';
		p += j < n ? j + 1 : j;
		n -= j < n ? j + 1 : j;
	}
	tls->used = n > 0 ? p[0] & 1 : 1;
	tls->client_cert_conn = n > 0 ? (p[0] >> 1) & 1 : 0;
	tls->cert_verified = n > 0 ? (p[0] >> 2) & 1 : 0;
	tls->version = str[0];
	tls->cipher = str[1];
	tls->cn = n > 0 && (p[0] & 8) ? NULL : str[2];
	tls->sni = n > 0 && (p[0] & 16) ? NULL : str[3];
}

HARNESS static void
reencode(const struct proxyproto_addrs *a, const uint8_t *rest, size_t nrest)
{
	struct proxyproto_addrs d;
	struct proxyproto_tls tls;
	char str[4][65];
	char line[128];
	uint8_t bin[PROXYPROTO_MAX_HEADER];
	size_t n;

	n = proxyproto_encode_v1(a, line, sizeof(line));
	check(n > 0 && n <= 107);
	check(proxyproto_encode_v1(a, line, n - 1) == 0);
	check(decode_exact((const uint8_t *)line, n, &d) == (int)n);
	same_addrs(a, &d);

	tls_from(rest, nrest, str, &tls);
	n = proxyproto_encode_v2(a, &tls, bin, sizeof(bin));
	check(n >= 16 && n <= sizeof(bin));
	check(proxyproto_encode_v2(a, &tls, bin, n - 1) == 0);
	check(decode_exact(bin, n, &d) == (int)n);
	same_addrs(a, &d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_addrs a, b;
	size_t k;
	int r, rp;

	r = decode_exact(data, size, &a);
	check(r >= PROXYPROTO_OVERSIZED);
	check(proxyproto_strerror(r) != NULL);
	if (r == PROXYPROTO_NEED_MORE) {
		check(size < PROXYPROTO_MAX_HEADER);
		return 0;
	}
	/* One prefix, picked by the input, keeps each run linear in its size. */
	k = size > 1 ? data[size - 1] % (r > 0 ? (size_t)r : size) : 0;
	rp = decode_exact(data, k, &b);
	if (r < 0) {
		check(rp == PROXYPROTO_NEED_MORE || rp == r);
		return 0;
	}
	check((size_t)r <= size && r <= PROXYPROTO_MAX_HEADER);
	check(rp == PROXYPROTO_NEED_MORE);
	check(decode_exact(data, (size_t)r, &b) == r);
	same_addrs(&a, &b);
	if (a.local)
		check(a.src_len == 0 && a.dst_len == 0);
	else
		check(a.src.ss_family == AF_INET || a.src.ss_family == AF_INET6);
	reencode(&a, data + r, size - (size_t)r);
	return 0;
}
