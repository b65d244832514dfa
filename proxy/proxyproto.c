/* PROXY protocol v1/v2 (HAProxy's proxy-protocol.txt). No I/O, no heap, no mutable state:
 * the decoder only looks at the bytes it is given, so a caller can call it again after
 * every read until it stops saying NEED_MORE. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* "PROXY UNKNOWN <ipv6> <ipv6> 65535 65535\r\n", the spec's worst case. */
#define V1_MAX 107

#define V2_HDR          16
#define V2_VERSION      0x20
#define V2_CMD_LOCAL    0x00
#define V2_CMD_PROXY    0x01
#define V2_FAM_UNSPEC   0x00
#define V2_FAM_TCP4     0x11
#define V2_FAM_TCP6     0x21
#define V2_ADDR_TCP4    12
#define V2_ADDR_TCP6    36
#define V2_TLV_HDR      3
#define V2_SSL_HDR      5 /* client (1 byte) + verify (4 bytes), before the sub-TLVs */
#define V2_LEN_MAX      0xffff
#define PP2_TYPE_AUTH   0x02
#define PP2_TYPE_SSL    0x20
#define PP2_SUB_VERSION 0x21
#define PP2_SUB_CN      0x22
#define PP2_SUB_CIPHER  0x23
#define PP2_CLIENT_SSL  0x01
#define PP2_CLIENT_CONN 0x02
#define PP2_CLIENT_SESS 0x04

/* Internal step results: the public results (<= 0) pass through unchanged. */
#define STEP_DONE 1

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* --- v1 decoding --- */

/* Match a literal at *pos. A partial match at the end of the input is NEED_MORE so the
 * caller can tell "valid so far" from "wrong". */
static int
v1_literal(const uint8_t *buf, size_t lim, size_t *pos, const char *lit)
{
	size_t p = *pos;

	for (; *lit != '\0'; lit++, p++) {
		if (p == lim)
			return PROXYPROTO_NEED_MORE;
		if (buf[p] != (uint8_t)*lit)
			return PROXYPROTO_MALFORMED;
	}
	*pos = p;
	return STEP_DONE;
}

static int
v1_addr_char(int af, uint8_t c)
{
	if (c >= '0' && c <= '9')
		return 1;
	if (c == '.')
		return 1;
	if (af == AF_INET)
		return 0;
	return c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* An address followed by one space. Characters and length are checked as they arrive so
 * that junk is refused before the line is complete; inet_pton has the final word once the
 * token is whole (it also refuses IPv4 heading zeroes, as the spec requires). */
static int
v1_addr(const uint8_t *buf, size_t lim, size_t *pos, int af, void *addr)
{
	char tok[INET6_ADDRSTRLEN];
	size_t max = af == AF_INET ? INET_ADDRSTRLEN - 1 : INET6_ADDRSTRLEN - 1;
	size_t n = 0, p = *pos;

	for (;; p++) {
		if (p == lim)
			return PROXYPROTO_NEED_MORE;
		if (buf[p] == ' ')
			break;
		if (!v1_addr_char(af, buf[p]) || n == max)
			return PROXYPROTO_MALFORMED;
		tok[n++] = (char)buf[p];
	}
	if (n == 0)
		return PROXYPROTO_MALFORMED;
	tok[n] = '\0';
	if (inet_pton(af, tok, addr) != 1)
		return PROXYPROTO_MALFORMED;
	*pos = p + 1;
	return STEP_DONE;
}

/* A port followed by term. Decimal 0..65535, no sign, no heading zeroes (the spec forbids
 * them to avoid octal confusion), so strtoul's leniency is not wanted here. */
static int
v1_port(const uint8_t *buf, size_t lim, size_t *pos, uint8_t term, uint16_t *port)
{
	unsigned long v = 0;
	size_t n = 0, p = *pos;

	for (;; p++, n++) {
		if (p == lim)
			return PROXYPROTO_NEED_MORE;
		if (buf[p] == term && n > 0)
			break;
		if (buf[p] < '0' || buf[p] > '9' || (n == 1 && v == 0))
			return PROXYPROTO_MALFORMED;
		v = v * 10 + (unsigned long)(buf[p] - '0');
		if (v > 65535)
			return PROXYPROTO_MALFORMED;
	}
	*port = (uint16_t)v;
	*pos = p + 1;
	return STEP_DONE;
}

/* "UNKNOWN" may carry anything up to the CRLF, which the receiver must ignore; only a bare
 * CR or LF is refused, since the spec forbids ending the line on either alone. */
static int
v1_unknown_tail(const uint8_t *buf, size_t lim, size_t *pos)
{
	size_t p = *pos;

	if (p == lim)
		return PROXYPROTO_NEED_MORE;
	if (buf[p] == ' ') {
		for (p++; p < lim && buf[p] != '\r'; p++)
			if (buf[p] == '\n')
				return PROXYPROTO_MALFORMED;
	} else if (buf[p] != '\r') {
		return PROXYPROTO_MALFORMED;
	}
	*pos = p;
	return v1_literal(buf, lim, pos, "\r\n");
}

static int
v1_decode(const uint8_t *buf, size_t len, struct proxyproto_addrs *out)
{
	static const struct {
		const char *word;
		int af;
	} protos[] = {{"TCP4 ", AF_INET}, {"TCP6 ", AF_INET6}, {"UNKNOWN", AF_UNSPEC}};
	struct proxyproto_addrs a;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a.src, *d4 = (struct sockaddr_in *)&a.dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.src;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&a.dst;
	size_t lim = len < V1_MAX ? len : V1_MAX, pos = 0, i;
	uint16_t sport, dport;
	void *sa, *da;
	int af, r;

	/* Anything but "PROXY " is not this protocol at all: say so on the first wrong byte. */
	r = v1_literal(buf, lim, &pos, "PROXY ");
	if (r != STEP_DONE)
		return r == PROXYPROTO_MALFORMED ? PROXYPROTO_BAD_SIGNATURE : r;

	for (i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if ((r = v1_literal(buf, lim, &pos, protos[i].word)) != PROXYPROTO_MALFORMED)
			break;
	if (r != STEP_DONE)
		goto fail;
	af = protos[i].af;

	memset(&a, 0, sizeof(a));
	if (af == AF_UNSPEC) {
		if ((r = v1_unknown_tail(buf, lim, &pos)) != STEP_DONE)
			goto fail;
		a.local = 1;
		*out = a;
		return (int)pos;
	}

	sa = af == AF_INET ? (void *)&s4->sin_addr : (void *)&s6->sin6_addr;
	da = af == AF_INET ? (void *)&d4->sin_addr : (void *)&d6->sin6_addr;
	if ((r = v1_addr(buf, lim, &pos, af, sa)) != STEP_DONE ||
	    (r = v1_addr(buf, lim, &pos, af, da)) != STEP_DONE ||
	    (r = v1_port(buf, lim, &pos, ' ', &sport)) != STEP_DONE ||
	    (r = v1_port(buf, lim, &pos, '\r', &dport)) != STEP_DONE ||
	    (r = v1_literal(buf, lim, &pos, "\n")) != STEP_DONE)
		goto fail;

	if (af == AF_INET) {
		s4->sin_family = d4->sin_family = AF_INET;
		s4->sin_port = htons(sport);
		d4->sin_port = htons(dport);
		a.src_len = a.dst_len = sizeof(struct sockaddr_in);
	} else {
		s6->sin6_family = d6->sin6_family = AF_INET6;
		s6->sin6_port = htons(sport);
		d6->sin6_port = htons(dport);
		a.src_len = a.dst_len = sizeof(struct sockaddr_in6);
	}
	*out = a;
	return (int)pos;
fail:
	/* Out of input is only "need more" while the line could still fit in 107 bytes;
	 * past that it can never become valid. */
	if (r == PROXYPROTO_NEED_MORE && len >= V1_MAX)
		return PROXYPROTO_OVERSIZED;
	return r;
}

/* --- v2 decoding --- */

static size_t
get16(const uint8_t *p)
{
	return (size_t)p[0] << 8 | p[1];
}

/* Walk the TLVs of a block of blen bytes of which only avail have arrived. They must tile
 * the block exactly: a TLV running past the end, or a tail too short to be a TLV, means the
 * sender and we disagree about the layout, and nothing after it can be trusted. Checked as
 * far as the bytes go, so a bad length is refused before the rest arrives. PP2_TYPE_SSL
 * nests sub-TLVs after its 5 fixed bytes: same rules, one level deep. */
static int
v2_tlvs(const uint8_t *p, size_t avail, size_t blen, int nested)
{
	size_t off = 0, vlen;
	int r;

	while (off < blen) {
		if (blen - off < V2_TLV_HDR)
			return PROXYPROTO_MALFORMED;
		if (avail < off + V2_TLV_HDR)
			return PROXYPROTO_NEED_MORE;
		vlen = get16(p + off + 1);
		if (vlen > blen - off - V2_TLV_HDR)
			return PROXYPROTO_MALFORMED;
		if (!nested && p[off] == PP2_TYPE_SSL) {
			size_t sub = off + V2_TLV_HDR + V2_SSL_HDR;

			if (vlen < V2_SSL_HDR)
				return PROXYPROTO_MALFORMED;
			r = v2_tlvs(p + sub, avail > sub ? avail - sub : 0, vlen - V2_SSL_HDR, 1);
			if (r != STEP_DONE)
				return r;
		}
		off += V2_TLV_HDR + vlen;
	}
	return avail >= blen ? STEP_DONE : PROXYPROTO_NEED_MORE;
}

static int
v2_decode(const uint8_t *buf, size_t len, struct proxyproto_addrs *out)
{
	struct proxyproto_addrs a;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a.src, *d4 = (struct sockaddr_in *)&a.dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.src;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&a.dst;
	size_t i, alen, blen, total, avail;
	uint8_t cmd;
	int r;

	for (i = 0; i < sizeof(v2_sig); i++) {
		if (i == len)
			return PROXYPROTO_NEED_MORE;
		if (buf[i] != v2_sig[i])
			return PROXYPROTO_BAD_SIGNATURE;
	}
	if (len == 12)
		return PROXYPROTO_NEED_MORE;
	/* The spec: receivers must only accept version 2 and drop unassigned commands. */
	cmd = buf[12] & 0x0f;
	if ((buf[12] & 0xf0) != V2_VERSION || (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY))
		return PROXYPROTO_MALFORMED;
	if (len == 13)
		return PROXYPROTO_NEED_MORE;
	/* Only TCP is relayed: UDP or UNIX addresses would mean a misconfigured proxy in
	 * front. UNSPEC is meaningful only for LOCAL (health checks); with PROXY it would
	 * leave us without a client address, which is exactly what we are here to learn. */
	switch (buf[13]) {
	case V2_FAM_UNSPEC:
		if (cmd != V2_CMD_LOCAL)
			return PROXYPROTO_MALFORMED;
		alen = 0;
		break;
	case V2_FAM_TCP4:
		alen = V2_ADDR_TCP4;
		break;
	case V2_FAM_TCP6:
		alen = V2_ADDR_TCP6;
		break;
	default:
		return PROXYPROTO_MALFORMED;
	}
	/* The high length byte alone can already rule the header out. */
	if (len == 14)
		return PROXYPROTO_NEED_MORE;
	if (V2_HDR + ((size_t)buf[14] << 8) > PROXYPROTO_MAX_HEADER)
		return PROXYPROTO_OVERSIZED;
	if (len == 15)
		return PROXYPROTO_NEED_MORE;
	blen = get16(buf + 14);
	total = V2_HDR + blen;
	if (total > PROXYPROTO_MAX_HEADER)
		return PROXYPROTO_OVERSIZED;
	if (blen < alen)
		return PROXYPROTO_MALFORMED;

	/* With UNSPEC the address layout is unknown, so is where TLVs would start: the whole
	 * block is skipped, as the spec says LOCAL's block must be. */
	if (buf[13] != V2_FAM_UNSPEC) {
		avail = len > V2_HDR + alen ? len - V2_HDR - alen : 0;
		r = v2_tlvs(buf + V2_HDR + alen, avail, blen - alen, 0);
		if (r != STEP_DONE)
			return r;
	}
	if (len < total)
		return PROXYPROTO_NEED_MORE;

	memset(&a, 0, sizeof(a));
	if (cmd == V2_CMD_LOCAL) {
		a.local = 1;
	} else if (buf[13] == V2_FAM_TCP4) {
		const uint8_t *p = buf + V2_HDR;

		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p, 4);
		memcpy(&d4->sin_addr, p + 4, 4);
		memcpy(&s4->sin_port, p + 8, 2);
		memcpy(&d4->sin_port, p + 10, 2);
		a.src_len = a.dst_len = sizeof(struct sockaddr_in);
	} else {
		const uint8_t *p = buf + V2_HDR;

		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p, 16);
		memcpy(&d6->sin6_addr, p + 16, 16);
		memcpy(&s6->sin6_port, p + 32, 2);
		memcpy(&d6->sin6_port, p + 34, 2);
		a.src_len = a.dst_len = sizeof(struct sockaddr_in6);
	}
	*out = a;
	return (int)total;
}

int
proxyproto_decode(const uint8_t *buf, size_t len, struct proxyproto_addrs *out)
{
	/* The two versions part on the first byte ('P' vs CR), so a stream that is neither
	 * is refused after one byte. */
	if (len == 0)
		return PROXYPROTO_NEED_MORE;
	if (buf[0] == v2_sig[0])
		return v2_decode(buf, len, out);
	return v1_decode(buf, len, out);
}

/* --- encoding --- */

/* The pair of endpoints as the wire sees them. AF_UNSPEC: not expressible, send
 * UNKNOWN / LOCAL. */
struct endpoints {
	int af;
	uint8_t src[16], dst[16];
	uint8_t sport[2], dport[2]; /* network byte order, as both the wire and sockaddr have */
};

/* One side: its family (AF_INET, AF_INET6 or AF_UNSPEC when unusable) and raw address. */
static int
endpoint(const struct sockaddr_storage *ss, socklen_t len, uint8_t addr[16], uint8_t port[2])
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	/* A length shorter than the family's sockaddr means the address was never filled
	 * in: better UNKNOWN than an address read from zeroes. */
	if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(*s4)) {
		memcpy(addr, &s4->sin_addr, 4);
		memcpy(port, &s4->sin_port, 2);
		return AF_INET;
	}
	if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(*s6)) {
		memcpy(addr, &s6->sin6_addr, 16);
		memcpy(port, &s6->sin6_port, 2);
		return AF_INET6;
	}
	return AF_UNSPEC;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes plain IPv4, in place. */
static int
unmap(uint8_t addr[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(addr, prefix, sizeof(prefix)) != 0)
		return 0;
	memmove(addr, addr + 12, 4);
	return 1;
}

static void
endpoints(const struct proxyproto_addrs *a, struct endpoints *e)
{
	int sf, df;

	memset(e, 0, sizeof(*e));
	e->af = AF_UNSPEC;
	if (a->local)
		return;
	sf = endpoint(&a->src, a->src_len, e->src, e->sport);
	df = endpoint(&a->dst, a->dst_len, e->dst, e->dport);
	if (sf == AF_UNSPEC || df == AF_UNSPEC)
		return;
	/* A v4 client reaching a dual-stack socket is seen as ::ffff:a.b.c.d on one side
	 * while the other may be plain IPv4; the wire format needs one family for both. */
	if (sf == AF_INET6 && df == AF_INET && unmap(e->src))
		sf = AF_INET;
	else if (sf == AF_INET && df == AF_INET6 && unmap(e->dst))
		df = AF_INET;
	if (sf == df)
		e->af = sf;
}

size_t
proxyproto_encode_v1(const struct proxyproto_addrs *a, char *out, size_t cap)
{
	static const char unknown[] = "PROXY UNKNOWN\r\n";
	char line[128], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	struct endpoints e;
	const char *src = line;
	size_t n;
	int r;

	endpoints(a, &e);
	if (e.af == AF_UNSPEC) {
		src = unknown;
		n = sizeof(unknown) - 1;
	} else {
		if (inet_ntop(e.af, e.src, s, sizeof(s)) == NULL ||
		    inet_ntop(e.af, e.dst, d, sizeof(d)) == NULL)
			return 0;
		r = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
		             e.af == AF_INET ? "TCP4" : "TCP6", s, d, (unsigned)get16(e.sport),
		             (unsigned)get16(e.dport));
		/* inet_ntop's longest IPv6 text is 39 hex characters (it only uses dotted form
		 * for ::ffff:0:0/96 and ::/96), so a line is at most 104 bytes. */
		if (r < 0 || (size_t)r > V1_MAX)
			return 0;
		n = (size_t)r;
	}
	/* No NUL: the result is bytes for the wire, and the length is returned. */
	if (n > cap)
		return 0;
	memcpy(out, src, n);
	return n;
}

static uint8_t *
put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

/* Bytes a string TLV takes, 0 when absent: NULL and "" say nothing worth sending. */
static size_t
tlv_size(const char *s)
{
	return s != NULL && *s != '\0' ? V2_TLV_HDR + strlen(s) : 0;
}

static uint8_t *
put_tlv(uint8_t *p, uint8_t type, const char *s)
{
	size_t n;

	if (s == NULL || *s == '\0')
		return p;
	n = strlen(s);
	*p++ = type;
	p = put16(p, n);
	memcpy(p, s, n);
	return p + n;
}

size_t
proxyproto_encode_v2(const struct proxyproto_addrs *a, const struct proxyproto_tls *tls,
                     uint8_t *out, size_t cap)
{
	struct endpoints e;
	size_t alen, auth = 0, ssl = 0, blen;
	uint8_t *p = out, client;
	uint32_t verify;

	endpoints(a, &e);
	if (e.af == AF_UNSPEC) {
		/* LOCAL tells the backend to use the connection's own endpoints; the spec says
		 * the receiver discards the block, so no TLVs are sent with it. */
		if (cap < V2_HDR)
			return 0;
		memcpy(p, v2_sig, sizeof(v2_sig));
		p[12] = V2_VERSION | V2_CMD_LOCAL;
		p[13] = V2_FAM_UNSPEC;
		put16(p + 14, 0);
		return V2_HDR;
	}

	alen = e.af == AF_INET ? V2_ADDR_TCP4 : V2_ADDR_TCP6;
	if (tls != NULL) {
		auth = tlv_size(tls->sni);
		if (tls->used)
			ssl = V2_TLV_HDR + V2_SSL_HDR + tlv_size(tls->version) + tlv_size(tls->cn) +
			      tlv_size(tls->cipher);
	}
	/* Every length on the wire is 16 bits: a string that cannot be described is a
	 * failure, not something to truncate silently. */
	if ((auth != 0 && auth - V2_TLV_HDR > V2_LEN_MAX) ||
	    (ssl != 0 && ssl - V2_TLV_HDR > V2_LEN_MAX))
		return 0;
	blen = alen + auth + ssl;
	if (blen > V2_LEN_MAX || V2_HDR + blen > cap)
		return 0;

	memcpy(p, v2_sig, sizeof(v2_sig));
	p += sizeof(v2_sig);
	*p++ = V2_VERSION | V2_CMD_PROXY;
	*p++ = e.af == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6;
	p = put16(p, blen);
	memcpy(p, e.src, alen == V2_ADDR_TCP4 ? 4 : 16);
	p += alen == V2_ADDR_TCP4 ? 4 : 16;
	memcpy(p, e.dst, alen == V2_ADDR_TCP4 ? 4 : 16);
	p += alen == V2_ADDR_TCP4 ? 4 : 16;
	memcpy(p, e.sport, 2);
	memcpy(p + 2, e.dport, 2);
	p += 4;

	if (auth != 0)
		p = put_tlv(p, PP2_TYPE_AUTH, tls->sni);
	if (ssl != 0) {
		/* A certificate on this connection was also presented at least once in its TLS
		 * session, hence CERT_SESS with CERT_CONN (HAProxy sets both after a full
		 * handshake). verify is 0 only for a verified certificate: no certificate is
		 * "not verified", which the spec only requires to be non-zero. */
		client = PP2_CLIENT_SSL;
		if (tls->client_cert_conn)
			client |= PP2_CLIENT_CONN | PP2_CLIENT_SESS;
		verify = tls->client_cert_conn && tls->cert_verified ? 0 : 1;
		*p++ = PP2_TYPE_SSL;
		p = put16(p, ssl - V2_TLV_HDR);
		*p++ = client;
		*p++ = (uint8_t)(verify >> 24);
		*p++ = (uint8_t)(verify >> 16);
		*p++ = (uint8_t)(verify >> 8);
		*p++ = (uint8_t)verify;
		p = put_tlv(p, PP2_SUB_VERSION, tls->version);
		p = put_tlv(p, PP2_SUB_CN, tls->cn);
		p = put_tlv(p, PP2_SUB_CIPHER, tls->cipher);
	}
	return (size_t)(p - out);
}

const char *
proxyproto_strerror(int result)
{
	switch (result) {
	case PROXYPROTO_NEED_MORE:
		return "incomplete header";
	case PROXYPROTO_BAD_SIGNATURE:
		return "no PROXY protocol signature";
	case PROXYPROTO_MALFORMED:
		return "malformed header";
	case PROXYPROTO_OVERSIZED:
		return "oversized header";
	}
	return result > 0 ? "ok" : "unknown error";
}
