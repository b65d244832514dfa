/* PROXY protocol v1 and v2 (HAProxy's spec, proxy-protocol.txt): encoder and decoder.
 * Sans-I/O: bytes in, bytes out. Used to tell a backend who the client is (encode),
 * and to learn it from a load balancer in front of mailedge (decode). */
#ifndef MAILEDGE_PROXYPROTO_H
#define MAILEDGE_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest header we accept when decoding: v1's 107 bytes, or v2's 16-byte preamble
 * plus TLVs. A load balancer sending more is refused ("oversized"). */
#define PROXYPROTO_MAX_HEADER 1024

/* TLS facts for v2's PP2_TYPE_SSL (and PP2_TYPE_AUTHORITY for the SNI name). */
struct proxyproto_tls {
	int used;             /* 0: plaintext session, no SSL TLV at all */
	int client_cert_conn; /* the client presented a certificate on this connection */
	int cert_verified;    /* ... and it was verified (verify field = 0) */
	const char *version;  /* "TLSv1.3" -> PP2_SUBTYPE_SSL_VERSION */
	const char *cipher;   /* "TLS_AES_128_GCM_SHA256" -> PP2_SUBTYPE_SSL_CIPHER */
	const char *cn;       /* verified client certificate CN -> PP2_SUBTYPE_SSL_CN, or NULL */
	const char *sni;      /* server name the client asked for -> PP2_TYPE_AUTHORITY, or NULL */
};

/* Addresses carried by a header. src = the client, dst = where it connected. */
struct proxyproto_addrs {
	int local; /* v2 LOCAL command or v1 "UNKNOWN": no addresses (health check) */
	struct sockaddr_storage src, dst;
	socklen_t src_len, dst_len;
};

enum proxyproto_result {
	PROXYPROTO_NEED_MORE = 0,      /* a valid prefix: read more (within the timeout) */
	PROXYPROTO_BAD_SIGNATURE = -1, /* neither "PROXY " nor the v2 signature */
	PROXYPROTO_MALFORMED = -2,     /* bad syntax, bad version/command/family, bad lengths */
	PROXYPROTO_OVERSIZED = -3,     /* longer than PROXYPROTO_MAX_HEADER (or v1's 107) */
};

/* Decode a header at the start of buf. Returns the header length (> 0) with *out
 * filled, or a proxyproto_result (<= 0). Never reads beyond len; TLVs are skipped
 * (checked for consistent lengths). A caller that got NEED_MORE with
 * len >= PROXYPROTO_MAX_HEADER must treat it as OVERSIZED. */
int proxyproto_decode(const uint8_t *buf, size_t len, struct proxyproto_addrs *out);

/* Encode. Both return the header length, or 0 if cap is too small or the address
 * families of src and dst differ / are not IPv4 or IPv6 (v1 then writes
 * "PROXY UNKNOWN\r\n", v2 a LOCAL header: never 0 for those). */
size_t proxyproto_encode_v1(const struct proxyproto_addrs *a, char *out, size_t cap);
size_t proxyproto_encode_v2(const struct proxyproto_addrs *a, const struct proxyproto_tls *tls,
                            uint8_t *out, size_t cap);

/* Readable name of a result, for logs. */
const char *proxyproto_strerror(int result);

#endif
