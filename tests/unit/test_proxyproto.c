/* Unit tests for proxy/proxyproto.c: PROXY protocol v1/v2 encoder and decoder.
 * Expected bytes are written by hand from HAProxy's proxy-protocol.txt, not produced by
 * the encoder, so that the encoder and the decoder cannot agree on the same mistake. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

#define SIG "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"

/* --- helpers --- */

static void
set4(struct sockaddr_storage *ss, socklen_t *len, const char *ip, uint16_t port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
	*len = sizeof(*s);
}

static void
set6(struct sockaddr_storage *ss, socklen_t *len, const char *ip, uint16_t port)
{
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
	*len = sizeof(*s);
}

/* Addresses from text: an address containing ':' is IPv6. */
static struct proxyproto_addrs
addrs(const char *src, uint16_t sport, const char *dst, uint16_t dport)
{
	struct proxyproto_addrs a;

	memset(&a, 0, sizeof(a));
	if (strchr(src, ':'))
		set6(&a.src, &a.src_len, src, sport);
	else
		set4(&a.src, &a.src_len, src, sport);
	if (strchr(dst, ':'))
		set6(&a.dst, &a.dst_len, dst, dport);
	else
		set4(&a.dst, &a.dst_len, dst, dport);
	return a;
}

static void
assert_endpoint(const struct sockaddr_storage *ss, socklen_t len, const char *ip, uint16_t port)
{
	char text[INET6_ADDRSTRLEN];

	if (strchr(ip, ':')) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		assert_int_equal(s->sin6_family, AF_INET6);
		assert_int_equal(len, sizeof(*s));
		assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof(text)));
		assert_int_equal(ntohs(s->sin6_port), port);
	} else {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		assert_int_equal(s->sin_family, AF_INET);
		assert_int_equal(len, sizeof(*s));
		assert_non_null(inet_ntop(AF_INET, &s->sin_addr, text, sizeof(text)));
		assert_int_equal(ntohs(s->sin_port), port);
	}
	assert_string_equal(text, ip);
}

static void
assert_addrs(const struct proxyproto_addrs *a, const char *src, uint16_t sport, const char *dst,
             uint16_t dport)
{
	assert_int_equal(a->local, 0);
	assert_endpoint(&a->src, a->src_len, src, sport);
	assert_endpoint(&a->dst, a->dst_len, dst, dport);
}

/* Decode from a heap copy of exactly len bytes, so that ASan sees any read past len. */
static int
decode(const void *bytes, size_t len, struct proxyproto_addrs *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	if (len)
		memcpy(copy, bytes, len);
	r = proxyproto_decode(copy, len, out);
	free(copy);
	return r;
}

static int
decode_str(const char *s)
{
	struct proxyproto_addrs a;

	return decode(s, strlen(s), &a);
}

/* Every proper prefix of a valid header must say "wait for more". */
static void
assert_prefixes_need_more(const void *hdr, size_t len)
{
	struct proxyproto_addrs a;
	size_t n;

	for (n = 0; n < len; n++) {
		int r = decode(hdr, n, &a);

		if (r != PROXYPROTO_NEED_MORE)
			fail_msg("prefix of %zu/%zu bytes: %d", n, len, r);
	}
}

/* A well-formed v2 TCP4 header (192.0.2.1:1234 -> 192.0.2.2:25) with TLV bytes appended. */
static size_t
v2_tcp4_with(uint8_t *out, const void *tlvs, size_t tlen)
{
	static const uint8_t addr[12] = {192, 0, 2, 1, 192, 0, 2, 2, 0x04, 0xd2, 0x00, 0x19};

	memcpy(out, SIG, 12);
	out[12] = 0x21;
	out[13] = 0x11;
	out[14] = (uint8_t)((12 + tlen) >> 8);
	out[15] = (uint8_t)(12 + tlen);
	memcpy(out + 16, addr, sizeof(addr));
	if (tlen)
		memcpy(out + 28, tlvs, tlen);
	return 28 + tlen;
}

/* --- v1 encoding --- */

static void
v1_encode__tcp4__exact_line(void **state)
{
	struct proxyproto_addrs a = addrs("192.168.0.1", 56324, "192.168.0.11", 443);
	char out[128];
	const char *want = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	(void)state;

	assert_int_equal(proxyproto_encode_v1(&a, out, sizeof(out)), strlen(want));
	assert_memory_equal(out, want, strlen(want));
}

static void
v1_encode__tcp6__exact_line(void **state)
{
	struct proxyproto_addrs a = addrs("2001:db8::1", 0, "2001:db8:0:1::25", 65535);
	char out[128];
	const char *want = "PROXY TCP6 2001:db8::1 2001:db8:0:1::25 0 65535\r\n";
	(void)state;

	assert_int_equal(proxyproto_encode_v1(&a, out, sizeof(out)), strlen(want));
	assert_memory_equal(out, want, strlen(want));
}

static void
v1_encode__mapped_and_ipv4__tcp4_line(void **state)
{
	struct proxyproto_addrs a = addrs("::ffff:203.0.113.7", 40000, "10.0.0.1", 587);
	struct proxyproto_addrs b = addrs("203.0.113.7", 40000, "::ffff:10.0.0.1", 587);
	const char *want = "PROXY TCP4 203.0.113.7 10.0.0.1 40000 587\r\n";
	char out[128];
	(void)state;

	assert_int_equal(proxyproto_encode_v1(&a, out, sizeof(out)), strlen(want));
	assert_memory_equal(out, want, strlen(want));
	assert_int_equal(proxyproto_encode_v1(&b, out, sizeof(out)), strlen(want));
	assert_memory_equal(out, want, strlen(want));
}

static void
v1_encode__both_mapped__tcp6_line_as_given(void **state)
{
	struct proxyproto_addrs a = addrs("::ffff:203.0.113.7", 40000, "::ffff:10.0.0.1", 587);
	const char *want = "PROXY TCP6 ::ffff:203.0.113.7 ::ffff:10.0.0.1 40000 587\r\n";
	struct proxyproto_addrs d;
	char out[128];
	size_t n;
	(void)state;

	n = proxyproto_encode_v1(&a, out, sizeof(out));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	assert_int_equal(decode(out, n, &d), (int)n);
	assert_addrs(&d, "::ffff:203.0.113.7", 40000, "::ffff:10.0.0.1", 587);
}

static void
v1_encode__unmappable_families__unknown(void **state)
{
	struct proxyproto_addrs mixed = addrs("2001:db8::1", 1, "10.0.0.1", 2);
	struct proxyproto_addrs unix_src = addrs("10.0.0.1", 1, "10.0.0.2", 2);
	struct proxyproto_addrs short_len = addrs("10.0.0.1", 1, "10.0.0.2", 2);
	char out[128];
	(void)state;

	unix_src.src.ss_family = AF_UNIX;
	short_len.dst_len = 4;
	assert_int_equal(proxyproto_encode_v1(&mixed, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
	assert_int_equal(proxyproto_encode_v1(&unix_src, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
	assert_int_equal(proxyproto_encode_v1(&short_len, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
}

static void
v1_encode__local__unknown(void **state)
{
	struct proxyproto_addrs a = addrs("10.0.0.1", 1, "10.0.0.2", 2);
	char out[15];
	(void)state;

	a.local = 1;
	assert_int_equal(proxyproto_encode_v1(&a, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
}

static void
v1_encode__cap_one_short__zero_and_nothing_written(void **state)
{
	struct proxyproto_addrs a = addrs("192.0.2.1", 1234, "192.0.2.2", 25);
	struct proxyproto_addrs u = a;
	char out[64];
	size_t n, cap;
	(void)state;

	n = proxyproto_encode_v1(&a, out, sizeof(out));
	assert_int_equal(n, strlen("PROXY TCP4 192.0.2.1 192.0.2.2 1234 25\r\n"));
	for (cap = 0; cap < n; cap++) {
		memset(out, 'x', sizeof(out));
		assert_int_equal(proxyproto_encode_v1(&a, out, cap), 0);
		assert_int_equal(out[0], 'x');
	}
	assert_int_equal(proxyproto_encode_v1(&a, out, n), n);
	u.local = 1;
	assert_int_equal(proxyproto_encode_v1(&u, out, 14), 0);
	assert_int_equal(proxyproto_encode_v1(&u, out, 15), 15);
}

/* --- v1 round trips --- */

static void
roundtrip_v1(const char *src, uint16_t sport, const char *dst, uint16_t dport, const char *wsrc,
             const char *wdst)
{
	struct proxyproto_addrs a = addrs(src, sport, dst, dport), d;
	char out[128];
	size_t n;

	n = proxyproto_encode_v1(&a, out, sizeof(out));
	assert_true(n > 0 && n <= 107);
	assert_int_equal(decode(out, n, &d), (int)n);
	assert_addrs(&d, wsrc, sport, wdst, dport);
}

static void
v1_roundtrip__tcp4__same_addresses(void **state)
{
	(void)state;
	roundtrip_v1("192.0.2.1", 1234, "198.51.100.2", 25, "192.0.2.1", "198.51.100.2");
	roundtrip_v1("0.0.0.0", 0, "255.255.255.255", 65535, "0.0.0.0", "255.255.255.255");
}

static void
v1_roundtrip__tcp6__same_addresses(void **state)
{
	(void)state;
	roundtrip_v1("2001:db8::1", 50000, "2001:db8::2", 993, "2001:db8::1", "2001:db8::2");
	roundtrip_v1("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
	             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
}

static void
v1_roundtrip__mapped__ipv4_both_sides(void **state)
{
	(void)state;
	roundtrip_v1("::ffff:192.0.2.1", 1234, "198.51.100.2", 465, "192.0.2.1", "198.51.100.2");
	roundtrip_v1("192.0.2.1", 1234, "::ffff:198.51.100.2", 465, "192.0.2.1", "198.51.100.2");
}

/* --- v1 decoding: known-good --- */

static void
v1_decode__spec_example_then_http__header_length_and_addresses(void **state)
{
	const char *hdr = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	const char *in = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
	                 "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(decode(in, strlen(in), &a), (int)strlen(hdr));
	assert_addrs(&a, "192.168.0.1", 56324, "192.168.0.11", 443);
	assert_int_equal(decode(hdr, strlen(hdr), &a), (int)strlen(hdr));
}

static void
v1_decode__longest_tcp4_and_tcp6_lines__accepted(void **state)
{
	const char *l4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	const char *l6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(strlen(l4), 56);
	assert_int_equal(strlen(l6), 104);
	assert_int_equal(decode(l4, 56, &a), 56);
	assert_addrs(&a, "255.255.255.255", 65535, "255.255.255.255", 65535);
	assert_int_equal(decode(l6, 104, &a), 104);
	assert_addrs(&a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void
v1_decode__port_zero_and_uppercase_ipv6__accepted(void **state)
{
	const char *l = "PROXY TCP6 2001:DB8::A ::1 0 0\r\n";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(decode(l, strlen(l), &a), (int)strlen(l));
	assert_addrs(&a, "2001:db8::a", 0, "::1", 0);
}

static void
v1_decode__unknown_short_form__local(void **state)
{
	struct proxyproto_addrs a;
	(void)state;

	memset(&a, 0xa5, sizeof(a));
	assert_int_equal(decode("PROXY UNKNOWN\r\nEHLO x\r\n", 23, &a), 15);
	assert_int_equal(a.local, 1);
	assert_int_equal(a.src_len, 0);
	assert_int_equal(a.dst_len, 0);
}

static void
v1_decode__unknown_spec_worst_case_107_bytes__local(void **state)
{
	const char *l = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(strlen(l), 107);
	assert_int_equal(decode(l, 107, &a), 107);
	assert_int_equal(a.local, 1);
	/* The spec: anything after UNKNOWN up to the CRLF is ignored, not parsed. */
	assert_int_equal(decode_str("PROXY UNKNOWN whatever, even  two spaces\r\n"), 42);
}

static void
v1_decode__truncated_at_every_length__need_more(void **state)
{
	static const char *const lines[] = {
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
	    "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
	    "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n",
	    "PROXY UNKNOWN\r\n",
	    "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	};
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_int_equal(decode_str(lines[i]), (int)strlen(lines[i]));
		assert_prefixes_need_more(lines[i], strlen(lines[i]));
	}
}

/* --- v1 decoding: errors --- */

static void
decode__http_get__bad_signature_after_one_byte(void **state)
{
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(decode("G", 1, &a), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode_str("GET / HTTP/1.1\r\n"), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode_str("EHLO example.org\r\n"), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode("\x16\x03\x01", 3, &a), PROXYPROTO_BAD_SIGNATURE);
}

static void
v1_decode__signature_wrong_within_proxy_space__bad_signature(void **state)
{
	(void)state;
	assert_int_equal(decode_str("PROX"), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode_str("PROXX"), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode_str("proxy "), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode_str("PROXY\t"), PROXYPROTO_BAD_SIGNATURE);
	assert_int_equal(decode_str("PROXY\r\n"), PROXYPROTO_BAD_SIGNATURE);
}

static void
v1_decode__bad_protocol_word__malformed_as_soon_as_seen(void **state)
{
	(void)state;
	assert_int_equal(decode_str("PROXY X"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP5"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY UDP4 "), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY tcp4 "), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4\r\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY UNKNOWNX\r\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY UNKNOWN\n"), PROXYPROTO_MALFORMED);
}

static void
v1_decode__bad_ports__malformed(void **state)
{
	static const char *const bad[] = {
	    "PROXY TCP4 1.2.3.4 5.6.7.8 01 25\r\n",   "PROXY TCP4 1.2.3.4 5.6.7.8 1 025\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 00 25\r\n",   "PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 123456 1\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 25\r\n",   "PROXY TCP4 1.2.3.4 5.6.7.8 +1 25\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 +25\r\n",   "PROXY TCP4 1.2.3.4 5.6.7.8 1a 25\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 25\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 25 \r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 25 26\r\n",
	};
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode_str(bad[i]) != PROXYPROTO_MALFORMED)
			fail_msg("accepted or misjudged: %s", bad[i]);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 65535 0\r\n"), 36);
}

static void
v1_decode__bad_addresses__malformed(void **state)
{
	static const char *const bad[] = {
	    "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",     "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",         "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8. 1 2\r\n",      "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",           "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
	    "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",           "PROXY TCP6 ::g ::1 1 2\r\n",
	    "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "PROXY TCP6 1::2::3 ::1 1 2\r\n",
	    "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",      "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4/32 5.6.7.8 1 2\r\n",
	};
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode_str(bad[i]) != PROXYPROTO_MALFORMED)
			fail_msg("accepted or misjudged: %s", bad[i]);
}

static void
v1_decode__extra_or_missing_spaces__malformed(void **state)
{
	static const char *const bad[] = {
	    "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
	    "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
	    "PROXY TCP41.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY UNKNOWN \n",
	};
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode_str(bad[i]) != PROXYPROTO_MALFORMED)
			fail_msg("accepted or misjudged: %s", bad[i]);
	assert_int_equal(decode_str(" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
	                 PROXYPROTO_BAD_SIGNATURE);
}

static void
v1_decode__bare_cr_or_lf__malformed(void **state)
{
	(void)state;
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY UNKNOWN junk\njunk\r\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY UNKNOWN junk\rjunk\r\n"), PROXYPROTO_MALFORMED);
	/* ... and a CR alone at the end of the input may still be followed by its LF. */
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), PROXYPROTO_NEED_MORE);
}

static void
v1_decode__junk_before_crlf__refused_before_line_ends(void **state)
{
	(void)state;
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4x"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1234567890123456"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 0"), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 00"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 70000"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x"), PROXYPROTO_MALFORMED);
}

static void
v1_decode__no_crlf_within_107_bytes__oversized(void **state)
{
	char line[200];
	struct proxyproto_addrs a;
	/* 45-character IPv6 text: valid for inet_pton, but two of them make a 116-byte line. */
	const char *longest = "PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
	                      "0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n";
	(void)state;

	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(decode(line, 106, &a), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode(line, 107, &a), PROXYPROTO_OVERSIZED);
	assert_int_equal(decode(line, sizeof(line), &a), PROXYPROTO_OVERSIZED);
	memcpy(line + 105, "\r\n", 2);
	assert_int_equal(decode(line, sizeof(line), &a), 107);
	memcpy(line + 105, "x\r\n", 3);
	assert_int_equal(decode(line, sizeof(line), &a), PROXYPROTO_OVERSIZED);

	assert_int_equal(strlen(longest), 116);
	assert_int_equal(decode(longest, 106, &a), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode(longest, 107, &a), PROXYPROTO_OVERSIZED);
	assert_int_equal(decode(longest, 116, &a), PROXYPROTO_OVERSIZED);
}

/* --- v2 encoding --- */

static void
v2_encode__ssl_and_authority__exact_bytes_from_spec(void **state)
{
	/* Built by hand from proxy-protocol.txt section 2.2: 16-byte header, TCP4 address
	 * block, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL {client, verify, sub-TLVs}. */
	static const uint8_t want[98] = SIG "\x21"             /* version 2, PROXY */
	                                    "\x11"             /* TCP over IPv4 */
	                                    "\x00\x52"         /* 12 + 19 + 51 = 82 bytes follow */
	                                    "\xc0\x00\x02\x0a" /* src 192.0.2.10 */
	                                    "\xc6\x33\x64\x01" /* dst 198.51.100.1 */
	                                    "\xc3\x50"         /* sport 50000 */
	                                    "\x03\xe1"         /* dport 993 */
	                                    "\x02\x00\x10"     /* PP2_TYPE_AUTHORITY, 16 */
	                                    "mail.example.org" /* */
	                                    "\x20\x00\x30" /* PP2_TYPE_SSL, 5 + 10 + 8 + 25 = 48 */
	                                    "\x07"         /* PP2_CLIENT_SSL|CERT_CONN|CERT_SESS */
	                                    "\x00\x00\x00\x00" /* verify: certificate verified */
	                                    "\x21\x00\x07"     /* PP2_SUBTYPE_SSL_VERSION, 7 */
	                                    "TLSv1.3"          /* */
	                                    "\x22\x00\x05"     /* PP2_SUBTYPE_SSL_CN, 5 */
	                                    "alice"            /* */
	                                    "\x23\x00\x16"     /* PP2_SUBTYPE_SSL_CIPHER, 22 */
	                                    "TLS_AES_128_GCM_SHA256"; /* */
	struct proxyproto_addrs a = addrs("192.0.2.10", 50000, "198.51.100.1", 993), d;
	struct proxyproto_tls tls = {
	    .used = 1,
	    .client_cert_conn = 1,
	    .cert_verified = 1,
	    .version = "TLSv1.3",
	    .cipher = "TLS_AES_128_GCM_SHA256",
	    .cn = "alice",
	    .sni = "mail.example.org",
	};
	uint8_t out[256];
	size_t n;
	(void)state;

	n = proxyproto_encode_v2(&a, &tls, out, sizeof(out));
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(decode(out, n, &d), (int)n);
	assert_addrs(&d, "192.0.2.10", 50000, "198.51.100.1", 993);
}

static void
v2_encode__tls_without_client_cert__verify_one_client_ssl_only(void **state)
{
	static const uint8_t want[] =
	    SIG "\x21\x21\x00\x49" /* TCP6, 36 + 37 = 73 */
	        "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" /* 2001:db8::1 */
	        "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" /* 2001:db8::2 */
	        "\x01\xbb"                                                         /* 443 */
	        "\x00\x19"                                                         /* 25 */
	        "\x20\x00\x22"      /* PP2_TYPE_SSL, 5 + 10 + 19 = 34 */
	        "\x01"              /* PP2_CLIENT_SSL only */
	        "\x00\x00\x00\x01"  /* verify: no certificate, so not verified */
	        "\x21\x00\x07"      /* VERSION */
	        "TLSv1.2"           /* */
	        "\x23\x00\x10"      /* CIPHER, 16 */
	        "ECDHE-RSA-AES128"; /* */
	struct proxyproto_addrs a = addrs("2001:db8::1", 443, "2001:db8::2", 25);
	struct proxyproto_tls tls = {
	    .used = 1, .version = "TLSv1.2", .cipher = "ECDHE-RSA-AES128", .cn = NULL};
	uint8_t out[256];
	(void)state;

	assert_int_equal(sizeof(want) - 1, 89);
	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, sizeof(out)), sizeof(want) - 1);
	assert_memory_equal(out, want, sizeof(want) - 1);
}

static void
v2_encode__cert_presented_not_verified__verify_nonzero(void **state)
{
	struct proxyproto_addrs a = addrs("192.0.2.1", 1, "192.0.2.2", 2);
	struct proxyproto_tls tls = {.used = 1, .client_cert_conn = 1, .cert_verified = 0};
	uint8_t out[64];
	(void)state;

	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, sizeof(out)), 16 + 12 + 8);
	assert_memory_equal(out + 28, "\x20\x00\x05\x07\x00\x00\x00\x01", 8);
}

static void
v2_encode__plaintext_or_no_tls__address_block_only(void **state)
{
	static const uint8_t want[28] = SIG "\x21\x11\x00\x0c"
	                                    "\xc0\x00\x02\x01\xc0\x00\x02\x02\x04\xd2\x00\x19";
	struct proxyproto_addrs a = addrs("192.0.2.1", 1234, "192.0.2.2", 25);
	struct proxyproto_tls plain = {.used = 0, .version = "TLSv1.3", .cipher = "X"};
	uint8_t out[64];
	(void)state;

	assert_int_equal(proxyproto_encode_v2(&a, NULL, out, sizeof(out)), 28);
	assert_memory_equal(out, want, 28);
	assert_int_equal(proxyproto_encode_v2(&a, &plain, out, sizeof(out)), 28);
	assert_memory_equal(out, want, 28);
}

static void
v2_encode__sni_without_tls_fields__authority_only(void **state)
{
	struct proxyproto_addrs a = addrs("192.0.2.1", 1234, "192.0.2.2", 25);
	struct proxyproto_tls t = {.used = 0, .sni = "mx"};
	struct proxyproto_tls empty = {.used = 1, .sni = "", .version = "", .cn = "", .cipher = ""};
	uint8_t out[64];
	(void)state;

	assert_int_equal(proxyproto_encode_v2(&a, &t, out, sizeof(out)), 33);
	assert_memory_equal(out + 14, "\x00\x11", 2);
	assert_memory_equal(out + 28, "\x02\x00\x02mx", 5);
	/* Empty strings carry nothing: no zero-length TLVs. */
	assert_int_equal(proxyproto_encode_v2(&a, &empty, out, sizeof(out)), 36);
	assert_memory_equal(out + 28, "\x20\x00\x05\x01\x00\x00\x00\x01", 8);
}

static void
v2_encode__unmappable_or_local__local_header_without_tlvs(void **state)
{
	static const uint8_t local[16] = SIG "\x20\x00\x00\x00";
	struct proxyproto_addrs mixed = addrs("2001:db8::1", 1, "192.0.2.2", 2);
	struct proxyproto_addrs loc = addrs("192.0.2.1", 1, "192.0.2.2", 2);
	struct proxyproto_tls tls = {.used = 1, .version = "TLSv1.3", .sni = "mx"};
	struct proxyproto_addrs d;
	uint8_t out[64];
	(void)state;

	loc.local = 1;
	assert_int_equal(proxyproto_encode_v2(&mixed, &tls, out, sizeof(out)), 16);
	assert_memory_equal(out, local, 16);
	assert_int_equal(proxyproto_encode_v2(&loc, &tls, out, sizeof(out)), 16);
	assert_memory_equal(out, local, 16);
	assert_int_equal(proxyproto_encode_v2(&loc, NULL, out, 15), 0);
	assert_int_equal(decode(out, 16, &d), 16);
	assert_int_equal(d.local, 1);
}

static void
v2_encode__cap_too_small__zero_and_nothing_written(void **state)
{
	struct proxyproto_addrs a = addrs("2001:db8::1", 1, "2001:db8::2", 2);
	struct proxyproto_tls tls = {.used = 1, .version = "TLSv1.3", .cipher = "C", .sni = "mx"};
	uint8_t out[128];
	size_t n, cap;
	(void)state;

	n = proxyproto_encode_v2(&a, &tls, out, sizeof(out));
	assert_int_equal(n, 16 + 36 + 5 + 3 + 5 + 10 + 4);
	for (cap = 0; cap < n; cap++) {
		memset(out, 0xee, sizeof(out));
		assert_int_equal(proxyproto_encode_v2(&a, &tls, out, cap), 0);
		assert_int_equal(out[0], 0xee);
	}
	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, n), n);
}

static void
v2_encode__string_beyond_16_bits__zero(void **state)
{
	static char big[70000];
	static uint8_t out[80000];
	struct proxyproto_addrs a = addrs("192.0.2.1", 1, "192.0.2.2", 2);
	struct proxyproto_tls tls = {.used = 1};
	(void)state;

	memset(big, 'a', sizeof(big) - 1);
	tls.cn = big;
	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, sizeof(out)), 0);
	tls.cn = NULL;
	tls.sni = big;
	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, sizeof(out)), 0);
	/* Each value fits, the block does not. */
	big[40000] = '\0';
	tls.cn = big;
	assert_int_equal(proxyproto_encode_v2(&a, &tls, out, sizeof(out)), 0);
}

/* --- v2 round trips --- */

static void
roundtrip_v2(const char *src, uint16_t sport, const char *dst, uint16_t dport, const char *wsrc,
             const char *wdst)
{
	struct proxyproto_addrs a = addrs(src, sport, dst, dport), d;
	struct proxyproto_tls tls = {.used = 1,
	                             .client_cert_conn = 1,
	                             .cert_verified = 1,
	                             .version = "TLSv1.3",
	                             .cipher = "TLS_AES_256_GCM_SHA384",
	                             .cn = "client.example",
	                             .sni = "imap.example.org"};
	uint8_t out[512], more[600];
	size_t n;

	n = proxyproto_encode_v2(&a, &tls, out, sizeof(out));
	assert_true(n > 16);
	assert_int_equal(decode(out, n, &d), (int)n);
	assert_addrs(&d, wsrc, sport, wdst, dport);
	assert_prefixes_need_more(out, n);
	/* Followed by the client's first bytes: only the header is consumed. */
	memcpy(more, out, n);
	memcpy(more + n, "a001 CAPABILITY\r\n", 17);
	assert_int_equal(decode(more, n + 17, &d), (int)n);
	n = proxyproto_encode_v2(&a, NULL, out, sizeof(out));
	assert_int_equal(decode(out, n, &d), (int)n);
	assert_addrs(&d, wsrc, sport, wdst, dport);
}

static void
v2_roundtrip__tcp4__same_addresses(void **state)
{
	(void)state;
	roundtrip_v2("192.0.2.1", 1234, "198.51.100.2", 25, "192.0.2.1", "198.51.100.2");
	roundtrip_v2("0.0.0.0", 0, "255.255.255.255", 65535, "0.0.0.0", "255.255.255.255");
}

static void
v2_roundtrip__tcp6__same_addresses(void **state)
{
	(void)state;
	roundtrip_v2("2001:db8::1", 50000, "2001:db8::2", 993, "2001:db8::1", "2001:db8::2");
	roundtrip_v2("::ffff:192.0.2.1", 1, "::ffff:192.0.2.2", 2, "::ffff:192.0.2.1",
	             "::ffff:192.0.2.2");
}

static void
v2_roundtrip__mapped__ipv4_both_sides(void **state)
{
	(void)state;
	roundtrip_v2("::ffff:192.0.2.1", 1234, "198.51.100.2", 465, "192.0.2.1", "198.51.100.2");
	roundtrip_v2("192.0.2.1", 1234, "::ffff:198.51.100.2", 465, "192.0.2.1", "198.51.100.2");
}

/* --- v2 decoding: known-good --- */

static void
v2_decode__haproxy_capture_then_http__header_length_and_addresses(void **state)
{
	/* HAProxy "send-proxy-v2" in front of an HTTP request, as captured on the wire. */
	static const uint8_t in[] = SIG "\x21\x11\x00\x0c"
	                                "\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50"
	                                "GET / HTTP/1.1\r\n";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(decode(in, sizeof(in) - 1, &a), 28);
	assert_addrs(&a, "172.19.0.1", 42578, "172.19.0.3", 80);
}

static void
v2_decode__unknown_and_reserved_tlvs__skipped(void **state)
{
	/* NOOP (empty), CRC32C (not checked: optional for receivers), a custom type, ALPN,
	 * UNIQUE_ID, an SSL TLV with an unknown sub-TLV, NETNS. */
	static const uint8_t tlvs[] = "\x04\x00\x00"
	                              "\x03\x00\x04\xde\xad\xbe\xef"
	                              "\xe0\x00\x02xy"
	                              "\x01\x00\x02h2"
	                              "\x05\x00\x01"
	                              "u"
	                              "\x20\x00\x0b\x05\x00\x00\x00\x00\x25\x00\x03RSA"
	                              "\x30\x00\x00";
	uint8_t h[128];
	struct proxyproto_addrs a;
	size_t n = v2_tcp4_with(h, tlvs, sizeof(tlvs) - 1);
	(void)state;

	assert_int_equal(decode(h, n, &a), (int)n);
	assert_addrs(&a, "192.0.2.1", 1234, "192.0.2.2", 25);
	assert_prefixes_need_more(h, n);
}

static void
v2_decode__local__local_without_addresses(void **state)
{
	static const uint8_t plain[] = SIG "\x20\x00\x00\x00";
	/* LOCAL with an address block: the spec says skip it, whatever it holds. */
	static const uint8_t junk[] = SIG "\x20\x00\x00\x05"
	                                  "\xff\xff\xff\xff\xff";
	static const uint8_t tcp4[] = SIG "\x20\x11\x00\x0c"
	                                  "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02";
	struct proxyproto_addrs a;
	(void)state;

	memset(&a, 0xa5, sizeof(a));
	assert_int_equal(decode(plain, 16, &a), 16);
	assert_int_equal(a.local, 1);
	assert_int_equal(a.src_len, 0);
	assert_int_equal(a.dst_len, 0);
	assert_int_equal(decode(junk, 21, &a), 21);
	assert_int_equal(a.local, 1);
	assert_int_equal(decode(tcp4, 28, &a), 28);
	assert_int_equal(a.local, 1);
	assert_int_equal(a.src_len, 0);
	assert_prefixes_need_more(junk, 21);
}

static void
v2_decode__largest_allowed_header__accepted(void **state)
{
	uint8_t h[PROXYPROTO_MAX_HEADER + 1], tlv[PROXYPROTO_MAX_HEADER];
	struct proxyproto_addrs a;
	size_t tlen = PROXYPROTO_MAX_HEADER - 28, n;
	(void)state;

	/* One NOOP TLV padding the header to exactly PROXYPROTO_MAX_HEADER. */
	memset(tlv, 0, sizeof(tlv));
	tlv[0] = 0x04;
	tlv[1] = (uint8_t)((tlen - 3) >> 8);
	tlv[2] = (uint8_t)(tlen - 3);
	n = v2_tcp4_with(h, tlv, tlen);
	assert_int_equal(n, PROXYPROTO_MAX_HEADER);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MAX_HEADER);
	assert_prefixes_need_more(h, n);
}

/* --- v2 decoding: errors --- */

static void
v2_decode__signature_wrong_at_any_byte__bad_signature_at_that_byte(void **state)
{
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n = v2_tcp4_with(h, NULL, 0), i;
	(void)state;

	for (i = 1; i < 12; i++) {
		h[i] ^= 0x40;
		assert_int_equal(decode(h, i, &a), PROXYPROTO_NEED_MORE);
		assert_int_equal(decode(h, i + 1, &a), PROXYPROTO_BAD_SIGNATURE);
		assert_int_equal(decode(h, n, &a), PROXYPROTO_BAD_SIGNATURE);
		h[i] ^= 0x40;
	}
	assert_int_equal(decode(h, n, &a), (int)n);
}

static void
v2_decode__bad_version__malformed(void **state)
{
	static const uint8_t vers[] = {0x01, 0x11, 0x31, 0xf1, 0x00};
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n = v2_tcp4_with(h, NULL, 0), i;
	(void)state;

	for (i = 0; i < sizeof(vers); i++) {
		h[12] = vers[i];
		assert_int_equal(decode(h, 13, &a), PROXYPROTO_MALFORMED);
		assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	}
}

static void
v2_decode__unassigned_command__malformed(void **state)
{
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n = v2_tcp4_with(h, NULL, 0);
	unsigned cmd;
	(void)state;

	for (cmd = 2; cmd < 16; cmd++) {
		h[12] = (uint8_t)(0x20 | cmd);
		assert_int_equal(decode(h, 13, &a), PROXYPROTO_MALFORMED);
		assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	}
}

static void
v2_decode__family_not_tcp__malformed(void **state)
{
	uint8_t h[300];
	struct proxyproto_addrs a;
	unsigned fam;
	(void)state;

	/* UDP, UNIX stream/datagram, and every unassigned combination; the block is sized
	 * generously so that only the family can be at fault. */
	memset(h, 0, sizeof(h));
	memcpy(h, SIG, 12);
	h[14] = 0x00;
	h[15] = 216;
	for (fam = 0; fam < 256; fam++) {
		int want = fam == 0x11 || fam == 0x21 ? 16 + 216 : PROXYPROTO_MALFORMED;

		h[13] = (uint8_t)fam;
		h[12] = 0x21;
		if (fam == 0x11 || fam == 0x21)
			continue; /* the TLV walk of zeroes is covered elsewhere */
		assert_int_equal(decode(h, 14, &a), want);
		assert_int_equal(decode(h, 16 + 216, &a), want);
		/* LOCAL tolerates UNSPEC, nothing else. */
		h[12] = 0x20;
		assert_int_equal(decode(h, 16 + 216, &a), fam == 0 ? 16 + 216 : want);
	}
}

static void
v2_decode__address_block_shorter_than_family__malformed(void **state)
{
	static const uint8_t v4[] = SIG "\x21\x11\x00\x0b";
	static const uint8_t v6[] = SIG "\x21\x21\x00\x23";
	static const uint8_t loc4[] = SIG "\x20\x11\x00\x00";
	struct proxyproto_addrs a;
	(void)state;

	assert_int_equal(decode(v4, 16, &a), PROXYPROTO_MALFORMED);
	assert_int_equal(decode(v6, 16, &a), PROXYPROTO_MALFORMED);
	assert_int_equal(decode(loc4, 16, &a), PROXYPROTO_MALFORMED);
}

static void
v2_decode__tlv_overruns_block__malformed_before_block_complete(void **state)
{
	/* AUTHORITY says 10 bytes, only 4 remain in the block. */
	static const uint8_t tlvs[] = "\x02\x00\x0a"
	                              "abcd";
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n = v2_tcp4_with(h, tlvs, sizeof(tlvs) - 1);
	(void)state;

	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	assert_int_equal(decode(h, 28 + 2, &a), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode(h, 28 + 3, &a), PROXYPROTO_MALFORMED);
}

static void
v2_decode__tail_too_short_for_a_tlv__malformed(void **state)
{
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n;
	(void)state;

	n = v2_tcp4_with(h, "\x04\x00", 2);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	n = v2_tcp4_with(h, "\x04\x00\x00\x04", 4);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
}

static void
v2_decode__ssl_tlv_bad_inner_lengths__malformed(void **state)
{
	uint8_t h[64];
	struct proxyproto_addrs a;
	size_t n;
	(void)state;

	/* Shorter than client + verify. */
	n = v2_tcp4_with(h, "\x20\x00\x04\x01\x00\x00\x00", 7);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	/* Sub-TLV VERSION claims 9 bytes inside an SSL TLV with room for 3. */
	n = v2_tcp4_with(h, "\x20\x00\x0b\x01\x00\x00\x00\x01\x21\x00\x09TLS", 14);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
	assert_int_equal(decode(h, 28 + 11, &a), PROXYPROTO_MALFORMED);
	/* Sub-TLVs leave a 1-byte tail inside the SSL TLV. */
	n = v2_tcp4_with(h, "\x20\x00\x06\x01\x00\x00\x00\x01\x21", 9);
	assert_int_equal(decode(h, n, &a), PROXYPROTO_MALFORMED);
}

static void
v2_decode__longer_than_max_header__oversized_from_length_field(void **state)
{
	uint8_t h[PROXYPROTO_MAX_HEADER + 16];
	struct proxyproto_addrs a;
	size_t blen = PROXYPROTO_MAX_HEADER - 16 + 1;
	(void)state;

	memset(h, 0, sizeof(h));
	v2_tcp4_with(h, NULL, 0);
	h[14] = (uint8_t)(blen >> 8);
	h[15] = (uint8_t)blen;
	assert_int_equal(decode(h, 15, &a), PROXYPROTO_NEED_MORE);
	assert_int_equal(decode(h, 16, &a), PROXYPROTO_OVERSIZED);
	assert_int_equal(decode(h, sizeof(h), &a), PROXYPROTO_OVERSIZED);
	/* 0xffff: the high byte alone is enough to know. */
	h[14] = 0xff;
	assert_int_equal(decode(h, 15, &a), PROXYPROTO_OVERSIZED);
	h[12] = 0x20;
	h[13] = 0x00;
	assert_int_equal(decode(h, 15, &a), PROXYPROTO_OVERSIZED);
}

static void
v2_decode__truncated_at_every_length__need_more(void **state)
{
	uint8_t h[64];
	size_t n = v2_tcp4_with(h, "\x02\x00\x02mx", 5);
	(void)state;

	assert_prefixes_need_more(h, n);
}

/* --- both --- */

static void
decode__error__output_untouched(void **state)
{
	struct proxyproto_addrs a, before;
	(void)state;

	memset(&a, 0x5a, sizeof(a));
	before = a;
	assert_int_equal(decode_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), PROXYPROTO_MALFORMED);
	assert_int_equal(decode("PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n", 32, &a),
	                 PROXYPROTO_MALFORMED);
	assert_int_equal(decode("PROXY TCP4 1.2.3.4", 18, &a), PROXYPROTO_NEED_MORE);
	assert_memory_equal(&a, &before, sizeof(a));
}

static void
strerror__every_result__distinct_text(void **state)
{
	static const int results[] = {PROXYPROTO_NEED_MORE, PROXYPROTO_BAD_SIGNATURE,
	                              PROXYPROTO_MALFORMED, PROXYPROTO_OVERSIZED, 28};
	size_t i, j;
	(void)state;

	for (i = 0; i < sizeof(results) / sizeof(results[0]); i++) {
		assert_non_null(proxyproto_strerror(results[i]));
		for (j = 0; j < i; j++)
			assert_string_not_equal(proxyproto_strerror(results[i]),
			                        proxyproto_strerror(results[j]));
	}
	assert_non_null(proxyproto_strerror(-99));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(v1_encode__tcp4__exact_line),
	    cmocka_unit_test(v1_encode__tcp6__exact_line),
	    cmocka_unit_test(v1_encode__mapped_and_ipv4__tcp4_line),
	    cmocka_unit_test(v1_encode__both_mapped__tcp6_line_as_given),
	    cmocka_unit_test(v1_encode__unmappable_families__unknown),
	    cmocka_unit_test(v1_encode__local__unknown),
	    cmocka_unit_test(v1_encode__cap_one_short__zero_and_nothing_written),
	    cmocka_unit_test(v1_roundtrip__tcp4__same_addresses),
	    cmocka_unit_test(v1_roundtrip__tcp6__same_addresses),
	    cmocka_unit_test(v1_roundtrip__mapped__ipv4_both_sides),
	    cmocka_unit_test(v1_decode__spec_example_then_http__header_length_and_addresses),
	    cmocka_unit_test(v1_decode__longest_tcp4_and_tcp6_lines__accepted),
	    cmocka_unit_test(v1_decode__port_zero_and_uppercase_ipv6__accepted),
	    cmocka_unit_test(v1_decode__unknown_short_form__local),
	    cmocka_unit_test(v1_decode__unknown_spec_worst_case_107_bytes__local),
	    cmocka_unit_test(v1_decode__truncated_at_every_length__need_more),
	    cmocka_unit_test(decode__http_get__bad_signature_after_one_byte),
	    cmocka_unit_test(v1_decode__signature_wrong_within_proxy_space__bad_signature),
	    cmocka_unit_test(v1_decode__bad_protocol_word__malformed_as_soon_as_seen),
	    cmocka_unit_test(v1_decode__bad_ports__malformed),
	    cmocka_unit_test(v1_decode__bad_addresses__malformed),
	    cmocka_unit_test(v1_decode__extra_or_missing_spaces__malformed),
	    cmocka_unit_test(v1_decode__bare_cr_or_lf__malformed),
	    cmocka_unit_test(v1_decode__junk_before_crlf__refused_before_line_ends),
	    cmocka_unit_test(v1_decode__no_crlf_within_107_bytes__oversized),
	    cmocka_unit_test(v2_encode__ssl_and_authority__exact_bytes_from_spec),
	    cmocka_unit_test(v2_encode__tls_without_client_cert__verify_one_client_ssl_only),
	    cmocka_unit_test(v2_encode__cert_presented_not_verified__verify_nonzero),
	    cmocka_unit_test(v2_encode__plaintext_or_no_tls__address_block_only),
	    cmocka_unit_test(v2_encode__sni_without_tls_fields__authority_only),
	    cmocka_unit_test(v2_encode__unmappable_or_local__local_header_without_tlvs),
	    cmocka_unit_test(v2_encode__cap_too_small__zero_and_nothing_written),
	    cmocka_unit_test(v2_encode__string_beyond_16_bits__zero),
	    cmocka_unit_test(v2_roundtrip__tcp4__same_addresses),
	    cmocka_unit_test(v2_roundtrip__tcp6__same_addresses),
	    cmocka_unit_test(v2_roundtrip__mapped__ipv4_both_sides),
	    cmocka_unit_test(v2_decode__haproxy_capture_then_http__header_length_and_addresses),
	    cmocka_unit_test(v2_decode__unknown_and_reserved_tlvs__skipped),
	    cmocka_unit_test(v2_decode__local__local_without_addresses),
	    cmocka_unit_test(v2_decode__largest_allowed_header__accepted),
	    cmocka_unit_test(v2_decode__signature_wrong_at_any_byte__bad_signature_at_that_byte),
	    cmocka_unit_test(v2_decode__bad_version__malformed),
	    cmocka_unit_test(v2_decode__unassigned_command__malformed),
	    cmocka_unit_test(v2_decode__family_not_tcp__malformed),
	    cmocka_unit_test(v2_decode__address_block_shorter_than_family__malformed),
	    cmocka_unit_test(v2_decode__tlv_overruns_block__malformed_before_block_complete),
	    cmocka_unit_test(v2_decode__tail_too_short_for_a_tlv__malformed),
	    cmocka_unit_test(v2_decode__ssl_tlv_bad_inner_lengths__malformed),
	    cmocka_unit_test(v2_decode__longer_than_max_header__oversized_from_length_field),
	    cmocka_unit_test(v2_decode__truncated_at_every_length__need_more),
	    cmocka_unit_test(decode__error__output_untouched),
	    cmocka_unit_test(strerror__every_result__distinct_text),
	};
	return cmocka_run_group_tests_name("proxyproto", tests, NULL, NULL);
}
