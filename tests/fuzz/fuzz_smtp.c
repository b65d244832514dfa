/* libFuzzer target for protocols/smtp.c and smtp_relay.c.
 *
 * Input: 4 control bytes, then data.
 *   c0 bit 0: level encrypt, bit 1: implicit TLS, bit 2: relay under TLS,
 *      bit 3: command-stream mode, bit 4: honest core (headroom, `full` only when
 *      full), bit 5: a learned capability list instead of the defaults, bit 6: the
 *      backend takes XCLIENT (cfg.identity)
 *   c1: relay buffer size (128..1148), c2 c3: PRNG seed for chunk sizes, flushes and
 *      the client's address.
 *
 * Raw mode drives the pre-TLS dialogue line by line as the core does, then both relay
 * filters over the data as client and backend streams, in random chunks. Command mode
 * builds a client command stream from the data, answers every forwarded line with a
 * simulated backend and checks that no STARTTLS/XCLIENT/XFORWARD line ever reaches
 * it; with an honest core (headroom, `full` only when full) also that every client
 * line gets exactly one reply, in order, and nothing stays stuck.
 *
 * Every input also drives the backend dialogue twice: with the data as the backend's
 * lines, and against a scripted backend (Postfix with XCLIENT and its failures, picked
 * by the data) for a client whose EHLO name comes from the data, checking the commands
 * mailedge sends (XCLIENT within 512 bytes, only offered attributes, valid xtext that
 * decodes to the client's name and address) and what it hands to the client.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

#define MAXB   1200
#define OUTMAX (1 << 20)

#define check(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "fuzz_smtp.c:%d: check failed: %s\n", __LINE__, #x);       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Coverage should guide towards smtp*.c, not the harness's own loops (they are most of
 * the run time when traced). */
#define HARNESS __attribute__((no_sanitize("coverage")))

static const struct protocol *const P = &protocol_smtp;
static _Alignas(max_align_t) unsigned char state[8192], other[8192];
static uint32_t rng;

HARNESS static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* One direction of the core: final bytes wait in front until written out. */
struct dir {
	char buf[MAXB];
	size_t pend, len, size;
	char *out;
	size_t outlen;
	const char *in;
	size_t inlen, inoff;
};

static char cout[OUTMAX], bout[OUTMAX], cin[OUTMAX], bin[OUTMAX];
static struct proto_config cfg;
static int honest;

/* Honest mode models a core that reads at most size - RESERVE bytes, so an injected
 * reply always fits once the bytes before it are written out, and that sets `full`
 * only when unexamined data alone fills what it reads. */
#define RESERVE 64

HARNESS static int
filter(struct dir *d, proto_filter_fn f)
{
	size_t cap = d->size - d->pend, before = d->len, k;
	int full = honest ? d->pend == 0 && d->len >= d->size - RESERVE
	                  : d->pend + d->len == d->size || rnd() % 8 == 0;

	k = f(state, &cfg, d->buf + d->pend, &d->len, cap, full);
	check(k <= d->len);
	check(d->len <= cap);
	d->pend += k;
	d->len -= k;
	return k > 0 || d->len != before;
}

/* Write out some or all final bytes, then compact. */
HARNESS static void
flush(struct dir *d)
{
	size_t k = honest || rnd() % 2 ? d->pend : rnd() % (d->pend + 1);

	check(d->outlen + k <= OUTMAX);
	memcpy(d->out + d->outlen, d->buf, k);
	d->outlen += k;
	memmove(d->buf, d->buf + k, d->pend + d->len - k);
	d->pend -= k;
}

HARNESS static int
feed(struct dir *d)
{
	size_t limit = d->size - (honest ? RESERVE : 0), k = d->inlen - d->inoff;
	size_t room = d->pend + d->len < limit ? limit - d->pend - d->len : 0;

	if (rnd() % 8 == 0 && k > 1)
		k = 1;
	else if (k > 0)
		k = 1 + rnd() % k;
	if (k > room)
		k = room;
	memcpy(d->buf + d->pend + d->len, d->in + d->inoff, k);
	d->len += k;
	d->inoff += k;
	return k > 0;
}

HARNESS static int
round_trip(struct dir *c, struct dir *b)
{
	int moved = feed(c) | feed(b);

	moved |= filter(c, P->client_filter);
	moved |= filter(b, P->backend_filter);
	moved |= filter(c, P->client_filter);
	moved |= c->pend > 0 || b->pend > 0;
	flush(c);
	flush(b);
	return moved;
}

HARNESS static void
dir_init(struct dir *d, size_t size, const char *in, size_t inlen, char *out)
{
	memset(d, 0, sizeof(*d));
	d->size = size;
	d->in = in;
	d->inlen = inlen;
	d->out = out;
}

HARNESS static int
relay_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f' ||
	       ch == '\0';
}

/* The first token of a line, as a lenient server tokenises it. */
HARNESS static int
refused_verb(const char *p, size_t n)
{
	static const char *const verbs[] = {"STARTTLS", "XCLIENT", "XFORWARD"};
	size_t i = 0, w;

	while (i < n && relay_space(p[i]))
		i++;
	for (w = i; w < n && !relay_space(p[w]); w++)
		;
	for (int k = 0; k < 3; k++)
		if (w - i == strlen(verbs[k]) && strncasecmp(p + i, verbs[k], w - i) == 0)
			return k == 0 ? 1 : 2;
	return 0;
}

/* --- the client, as the core describes it to the backend dialogue --- */

static struct proto_peer peer;
static const struct proto_peer *peerp;
static char peer_addr[64];

HARNESS static void
pick_peer(void)
{
	static const char *const addrs[] = {
	    "203.0.113.7", "2001:db8::7", "::ffff:192.0.2.1", "fe80::1%eth0", "::", "::1", "",
	    "garbage",     "1.2.3",       "2001:db8::1::2",   "0.0.0.0",
	};
	uint32_t r = rnd() % (sizeof(addrs) / sizeof(addrs[0]) + 3);

	memset(&peer, 0, sizeof(peer));
	peerp = &peer;
	peer.port = rnd() % 4 == 0 ? rnd() : rnd() % 65536;
	peer.tls = 1;
	if (r < sizeof(addrs) / sizeof(addrs[0]))
		peer.addr = addrs[r];
	else if (r == sizeof(addrs) / sizeof(addrs[0]))
		peerp = NULL;
	else if (r == sizeof(addrs) / sizeof(addrs[0]) + 1)
		peer.addr = NULL;
	else {
		size_t n = rnd() % (sizeof(peer_addr) - 1);
		for (size_t i = 0; i < n; i++)
			peer_addr[i] = (char)(1 + rnd() % 255);
		peer_addr[n] = '\0';
		peer.addr = peer_addr;
	}
}

/* --- the backend dialogue against a scripted backend --- */

/* What mailedge told the backend with XCLIENT. */
struct xseen {
	int commands;
	unsigned attrs; /* 1 ADDR, 2 PORT, 4 NAME, 8 HELO, 16 PROTO */
	char addr[128], helo[1024];
	size_t helolen;
};

HARNESS static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* xtext (RFC 3461) as Postfix decodes it; -1 when invalid. */
HARNESS static long
xtext_decode(const char *p, size_t n, char *dst, size_t max)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		check(len < max);
		if (p[i] == '+') {
			if (i + 2 >= n)
				return -1;
			int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			dst[len++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (p[i] < '!' || p[i] > '~' || p[i] == '=')
			return -1;
		else
			dst[len++] = p[i];
	}
	return (long)len;
}

/* One XCLIENT command line (without CRLF): every attribute one the backend offered,
 * offered once across the commands, valid xtext. */
HARNESS static void
xclient_check(const char *p, size_t n, unsigned offered, struct xseen *x)
{
	static const char *const names[] = {"ADDR", "PORT", "NAME", "HELO", "PROTO"};
	char val[1024];
	size_t i = 7, e, eq;
	long vlen;
	int k;

	check(n + 2 <= 512);
	check(x->commands++ < 2);
	check(n > 8 && memcmp(p, "XCLIENT ", 8) == 0);
	for (; i < n; i = e) {
		check(p[i] == ' ');
		i++;
		for (e = i; e < n && p[e] != ' '; e++)
			;
		for (eq = i; eq < e && p[eq] != '='; eq++)
			;
		check(eq < e);
		for (k = 0; k < 5; k++)
			if (eq - i == strlen(names[k]) && memcmp(p + i, names[k], eq - i) == 0)
				break;
		check(k < 5);
		check(offered & (1u << k));
		check(!(x->attrs & (1u << k)));
		x->attrs |= 1u << k;
		vlen = xtext_decode(p + eq + 1, e - eq - 1, val, sizeof(val));
		check(vlen > 0);
		if (k == 0) {
			check((size_t)vlen < sizeof(x->addr));
			memcpy(x->addr, val, (size_t)vlen);
			x->addr[vlen] = '\0';
		} else if (k == 3) {
			memcpy(x->helo, val, (size_t)vlen);
			x->helolen = (size_t)vlen;
		} else if (k == 4)
			check((vlen == 5 && !memcmp(val, "ESMTP", 5)) ||
			      (vlen == 4 && !memcmp(val, "SMTP", 4)));
		else if (k == 2)
			check(vlen == 13 && !memcmp(val, "[UNAVAILABLE]", 13));
	}
}

#define BANNER "220 mail.example.test ESMTP Postfix (Debian/GNU)\r\n"
static const char *const s_greeting[] = {
    BANNER,
    "220-mail.example.test ESMTP\r\n220-wait\n220 ok\r\n",
    "220 x\n",
    "421 4.3.2 Service shutting down\r\n",
    "554 5.7.1 no\r\n",
};
static const char *const s_ehlo[] = {
    "250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
    "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n"
    "250-8BITMIME\r\n250 CHUNKING\r\n",
    "250-h\r\n250 XCLIENT ADDR\r\n",
    "250-h\r\n250 xclient addr\thelo proto\r\n",
    "250-h\r\n250 XCLIENT NAME HELO PROTO\r\n",
    "250-XCLIENT ADDR\r\n250 SIZE\r\n",
    "250 h\r\n",
    "250-h\r\n250-XCLIENT\r\n250 XCLIENTADDR PORT\r\n",
    "502 5.5.2 Error: command not recognized\r\n",
    "421 4.7.0 mail.example.test Error: too many errors\r\n",
};
static const unsigned s_ehlo_offers[] = {31, 1, 25, 28, 0, 0, 0, 0, 0};
static const char *const s_xclient[] = {
    BANNER,
    "220-mail.example.test ESMTP\r\n220 again\r\n",
    "250 Ok\r\n",
    "550 5.7.0 Error: insufficient authorization\r\n",
    "501 5.5.4 Bad ADDR syntax: x\r\n",
    "421 4.4.2 mail.example.test Error: timeout exceeded\r\n",
};
static const char *const s_replay[] = {
    "250 mail.example.test\r\n",
    "250-mail.example.test\r\n250 CHUNKING\r\n",
    "550 5.7.1 go away\r\n",
};

/* Postfix would log this client as ADDR: the peer's own address, or unknown. */
HARNESS static void
addr_check(const struct xseen *x)
{
	unsigned char a[16];
	char tmp[64];
	const char *want = peerp != NULL ? peerp->addr : NULL;

	if (strcmp(x->addr, "[UNAVAILABLE]") == 0) {
		/* only when the peer's address is no address */
		if (want != NULL && strlen(want) < sizeof(tmp)) {
			snprintf(tmp, sizeof(tmp), "%.*s", (int)strcspn(want, "%"), want);
			check(inet_pton(AF_INET, tmp, a) != 1 && inet_pton(AF_INET6, tmp, a) != 1);
		}
		return;
	}
	check(want != NULL);
	if (strncmp(x->addr, "IPV6:", 5) == 0)
		check(inet_pton(AF_INET6, x->addr + 5, a) == 1);
	else
		check(inet_pton(AF_INET, x->addr, a) == 1);
}

/* Runs the dialogue to its end. pick: bytes choosing each reply (NULL: success all
 * along); hello: the client's EHLO/HELO argument as the dialogue saw it, or NULL. */
HARNESS static enum proto_bstep
backend_session(void *st, const unsigned char *pick, size_t npick, const char *hello,
                size_t hellolen, int esmtp)
{
	struct proto_out out, to_client = {0};
	struct xseen x;
	const char *reply = NULL, *greeting = NULL, *lf, *p;
	enum proto_bstep r = PROTO_B_MORE;
	unsigned offered = 0;
	int refused = 0, own_ehlo = 0, turn = 0, replayed = 0;
	size_t k = 0;

	memset(&x, 0, sizeof(x));
#define PICK(t) (t)[pick != NULL && k < npick ? pick[k++] % (sizeof(t) / sizeof((t)[0])) : 0]
	reply = PICK(s_greeting);
	greeting = reply;
	for (; turn < 8; turn++) {
		int code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
		refused |= code < 200 || code > 299;
		for (p = reply; (lf = strchr(p, '\n')) != NULL; p = lf + 1) {
			out.len = 0;
			r = P->backend_line(st, &cfg, peerp, p, (size_t)(lf - p) + 1, &out,
			                    &to_client);
			check(r >= PROTO_B_MORE && r <= PROTO_B_FAIL);
			check(out.len <= PROTO_OUT_MAX && to_client.len <= PROTO_OUT_MAX);
			check((r == PROTO_B_SEND) == (out.len > 0));
			if (r == PROTO_B_FAIL)
				break;
			/* a reply's last line always moves the dialogue on */
			check(lf[1] == '\0' ? r != PROTO_B_MORE : r == PROTO_B_MORE);
		}
		if (r == PROTO_B_FAIL || r == PROTO_B_DONE)
			break;
		/* what was sent decides which reply comes next */
		check(out.len >= 2 && out.data[out.len - 2] == '\r' &&
		      out.data[out.len - 1] == '\n');
		if (turn == 0 && cfg.identity == PROTO_IDENT_XCLIENT) {
			/* first mailedge's own EHLO, to learn whether XCLIENT is offered */
			check(out.len == 7 + strlen(cfg.hostname) &&
			      memcmp(out.data, "EHLO ", 5) == 0 &&
			      memcmp(out.data + 5, cfg.hostname, strlen(cfg.hostname)) == 0);
			own_ehlo = 1;
			reply = PICK(s_ehlo);
			for (size_t i = 0; i < sizeof(s_ehlo) / sizeof(s_ehlo[0]); i++)
				if (reply == s_ehlo[i])
					offered = s_ehlo_offers[i];
		} else if (out.len > 8 && memcmp(out.data, "XCLIENT ", 8) == 0) {
			check(own_ehlo && (offered & 1) && !replayed);
			check(memchr(out.data, '\n', out.len) == out.data + out.len - 1);
			xclient_check(out.data, out.len - 2, offered, &x);
			reply = PICK(s_xclient);
			if (memcmp(reply, "220", 3) == 0)
				greeting = reply;
		} else {
			/* the replay: exactly the client's EHLO/HELO, once, in plaintext */
			check(hello != NULL && !replayed && !peer.tls);
			check(out.len == hellolen + 7);
			check(memcmp(out.data, esmtp ? "EHLO " : "HELO ", 5) == 0);
			check(memcmp(out.data + 5, hello, hellolen) == 0);
			replayed = 1;
			reply = PICK(s_replay);
		}
	}
	check(r == PROTO_B_DONE || r == PROTO_B_FAIL);
	check((r == PROTO_B_FAIL) == refused);
	if (r == PROTO_B_FAIL)
		return r;
	/* XCLIENT when offered with ADDR, ADDR always in it */
	check(x.commands == 0 || (x.attrs & 1));
	if (cfg.identity == PROTO_IDENT_XCLIENT && (offered & 1)) {
		check(x.commands > 0);
		addr_check(&x);
		if (hello != NULL && !peer.tls && (offered & 16))
			check(x.attrs & 16);
		if (x.attrs & 8) {
			/* the client's name, without trailing blanks */
			size_t n = hellolen;
			while (n > 0 && (hello[n - 1] == ' ' || hello[n - 1] == '\t'))
				n--;
			check(x.helolen == n && memcmp(x.helo, hello, n) == 0);
		}
	} else
		check(x.commands == 0);
	check(hello == NULL || peer.tls || replayed);
	/* implicit TLS: the client gets the backend's last greeting, byte-exact */
	if (cfg.implicit_tls && peer.tls)
		check(to_client.len == strlen(greeting) &&
		      memcmp(to_client.data, greeting, to_client.len) == 0);
	else
		check(to_client.len == 0);
	/* nothing after DONE is taken for the dialogue */
	out.len = 0;
	check(P->backend_line(st, &cfg, peerp, "250 x\r\n", 7, &out, &to_client) == PROTO_B_FAIL);
	return r;
#undef PICK
}

/* A client that said EHLO/HELO (name from the data), then went on in plaintext or
 * STARTTLS, then the scripted backend. */
HARNESS static void
backend_scripted(const unsigned char *p, size_t n)
{
	char l[1100];
	size_t namelen = n > 0 ? p[0] * 4u % 1000 : 0, i, a;
	int tls = cfg.implicit_tls || (n > 1 && p[1] & 1), esmtp = n > 1 && p[1] & 2;
	struct proto_out out = {0};
	const char *args;

	if (namelen > n)
		namelen = n;
	if (namelen + 7 > P->max_line)
		namelen = P->max_line - 7;
	P->init(other, &cfg, cfg.implicit_tls);
	memcpy(l, esmtp ? "EHLO " : "HELO ", 5);
	for (i = 0; i < namelen; i++)
		l[5 + i] = p[i] == '\n' || p[i] == '\0' ? 'x' : (char)p[i];
	memcpy(l + 5 + namelen, "\r\n", 2);
	peer.tls = tls;
	if (!cfg.implicit_tls) {
		out.len = 0;
		P->client_line(other, &cfg, l, namelen + 7, &out);
		if (tls)
			P->init(other, &cfg, 1);
	}
	/* what the dialogue took as the name: the arguments as proto_word_is gives them */
	args = NULL;
	a = 0;
	if (!tls && proto_word_is(l, namelen + 7, esmtp ? "EHLO" : "HELO", &args, &a) && a == 0)
		args = NULL;
	n = n > 2 ? n - 2 : 0;
	backend_session(other, n > 0 ? p + 2 : NULL, n, args, a, esmtp);
}

/* --- pre-TLS dialogue, backend dialogue, probe --- */

HARNESS static size_t
dialogue(const char *p, size_t n, int *tls, int *relay)
{
	struct proto_out out = {0};
	size_t off = 0, hellolen = 0;
	const char *lf, *hello = NULL;
	int esmtp = 0;

	P->greeting(state, &cfg, &out);
	check(out.len <= PROTO_OUT_MAX);
	while (off < n) {
		size_t rest = n - off, len;

		lf = memchr(p + off, '\n', rest < P->max_line ? rest : P->max_line);
		if (lf == NULL)
			break; /* too long (the core closes) or unfinished */
		len = (size_t)(lf - (p + off)) + 1;
		/* the EHLO/HELO the backend dialogue must replay (a failed one replaces
		 * nothing) */
		if (memchr(p + off, '\0', len) == NULL) {
			const char *args;
			size_t arglen;
			int e = proto_word_is(p + off, len, "EHLO", &args, &arglen);
			if ((e || proto_word_is(p + off, len, "HELO", &args, &arglen)) &&
			    arglen > 0)
				hello = args, hellolen = arglen, esmtp = e;
		}
		out.len = 0;
		enum proto_action a = P->client_line(state, &cfg, p + off, len, &out);
		check(out.len <= PROTO_OUT_MAX);
		check(a >= PROTO_CONTINUE && a <= PROTO_CLOSE);
		if (a == PROTO_BACKEND) {
			check(out.len == 0);
			/* a backend that says yes to everything */
			peer.tls = 0;
			check(backend_session(state, NULL, 0, hello, hellolen, esmtp) ==
			      PROTO_B_DONE);
			*relay = 1;
			return off; /* this line and the rest go through the relay */
		}
		off += len;
		if (a == PROTO_STARTTLS) {
			P->init(state, &cfg, 1);
			out.len = 0;
			check(P->client_line(state, &cfg, "STARTTLS\r\n", 10, &out) == PROTO_CLOSE);
			check(out.len == 0);
			*tls = 1;
			*relay = 1;
			return off;
		}
		if (a == PROTO_CLOSE)
			break;
	}
	return n;
}

HARNESS static void
backend_and_probe(const char *p, size_t n)
{
	struct proto_out out;
	char caps[128];
	const char *lf;
	int bdone = 0, pdone = 0;

	P->init(other, &cfg, cfg.implicit_tls);
	check(P->probe_state_size <= sizeof(state));
	for (size_t off = 0; off < n && !(bdone && pdone); off = (size_t)(lf - p) + 1) {
		if ((lf = memchr(p + off, '\n', n - off)) == NULL)
			lf = p + n - 1;
		size_t len = (size_t)(lf - (p + off)) + 1;
		if (!bdone) {
			struct proto_out to_client = {0};
			out.len = 0;
			enum proto_bstep s =
			    P->backend_line(other, &cfg, peerp, p + off, len, &out, &to_client);
			check(s >= PROTO_B_MORE && s <= PROTO_B_FAIL && out.len <= PROTO_OUT_MAX);
			check((s == PROTO_B_SEND) == (out.len > 0));
			check(to_client.len == 0 || (s == PROTO_B_DONE && cfg.implicit_tls));
			bdone = s == PROTO_B_DONE || s == PROTO_B_FAIL;
		}
		if (off == 0)
			P->probe_init(state, &cfg);
		if (!pdone) {
			out.len = 0;
			enum proto_probe s =
			    P->probe_line(state, &cfg, p + off, len, &out, caps, sizeof(caps));
			check(s >= PROTO_P_MORE && s <= PROTO_P_FAIL && out.len <= PROTO_OUT_MAX);
			check(memchr(caps, '\0', sizeof(caps)) != NULL);
			check(strchr(caps, '\r') == NULL);
			pdone = s == PROTO_P_DONE || s == PROTO_P_FAIL;
		}
	}
}

/* --- relay --- */

HARNESS static void
relay_raw(const char *p, size_t n, size_t size)
{
	static struct dir c, b;

	dir_init(&c, size, p, n, cout);
	dir_init(&b, size, p, n, bout);
	for (int idle = 0, i = 0; idle < 4 && i < 200000; i++)
		idle = round_trip(&c, &b) ? 0 : idle + 1;
}

#define C(s)                                                                                       \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
static const struct {
	const char *s;
	size_t n;
} commands[] = {
    C("NOOP"),
    C("RSET"),
    C("MAIL FROM:<a@example.org>"),
    C("RCPT TO:<b@example.net>"),
    C("EHLO x"),
    C("HELO x"),
    C("STARTTLS"),
    C("starttls"),
    C(" STARTTLS"),
    C("STARTTLS\t"),
    C("XCLIENT ADDR=192.0.2.1"),
    C("XFORWARD NAME=x"),
    C("STARTTLS foo"),
    C("VRFY STARTTLS"),
    C("NOOP STARTTLS"),
    C("\tXClient"),
    C("STARTTLS\0x"),
    C("\0XFORWARD"),
    C("QUIT"),
    C("STARTTLS\r"),
    C("STARTTLSX"),
    C("XCLIENTS"),
};
#define NCMD (sizeof(commands) / sizeof(commands[0]))

HARNESS static size_t
make_commands(const unsigned char *p, size_t n, char *dst, size_t max)
{
	size_t len = 0;

	/* 160 commands overflow the 64-entry queue twice; more only costs time */
	for (size_t i = 0; i < n && i < 160 && len + 32 < max; i++) {
		memcpy(dst + len, commands[p[i] % NCMD].s, commands[p[i] % NCMD].n);
		len += commands[p[i] % NCMD].n;
		if (p[i] & 0x80)
			dst[len++] = '\r';
		dst[len++] = '\n';
	}
	return len;
}

/* The simulated backend answers every line it got, in order: "250 <n>". */
HARNESS static void
answer(struct dir *c, struct dir *b, size_t *answered, size_t *fwd)
{
	for (; *answered < c->outlen; (*answered)++) {
		if (cout[*answered] != '\n')
			continue;
		check(b->inlen + 32 <= sizeof(bin));
		memcpy(bin + b->inlen, "250 ", 4);
		b->inlen += 4;
		for (size_t k = *fwd, d = 1000000; d > 0; d /= 10)
			bin[b->inlen++] = (char)('0' + k / d % 10);
		memcpy(bin + b->inlen, "\r\n", 2);
		b->inlen += 2;
		(*fwd)++;
	}
}

HARNESS static void
relay_commands(const unsigned char *p, size_t n, size_t size, int tls)
{
	static struct dir c, b;
	size_t inlen = make_commands(p, n, cin, sizeof(cin)), answered = 0, fwd = 0;
	size_t lines = 0, replies = 0, i, off, bpos, e;
	int idle = 0;

	dir_init(&c, size, cin, inlen, cout);
	dir_init(&b, size, bin, 0, bout);
	if (cfg.implicit_tls) {
		/* the greeting passes through the filter as the first reply */
		memcpy(bin, "220 g\r\n", 7);
		b.inlen = 7;
		lines++;
	}
	for (int r = 0; idle < 4 && r < 400000; r++) {
		idle = round_trip(&c, &b) ? 0 : idle + 1;
		answer(&c, &b, &answered, &fwd);
	}
	/* nothing refused ever reached the backend */
	for (off = 0; off < c.outlen; off = i + 1) {
		for (i = off; i < c.outlen && cout[i] != '\n'; i++)
			;
		check(!refused_verb(cout + off, i - off));
	}
	/* never more replies than client lines */
	for (i = 0; i < inlen; i++)
		lines += cin[i] == '\n';
	for (i = 0; i < b.outlen; i++)
		replies += bout[i] == '\n';
	check(replies <= lines);
	if (!honest)
		return; /* a core without headroom can starve a refusal of room */
	/* every client line answered exactly once, nothing left stuck */
	check(c.len == 0 && c.pend == 0 && b.len == 0 && b.pend == 0);
	check(replies == lines);
	/* in order: each refusal where its command was, the backend's answers between */
	bpos = cfg.implicit_tls ? 7 : 0;
	check(!cfg.implicit_tls || memcmp(bout, "220 g\r\n", 7) == 0);
	for (off = 0, fwd = 0; off < inlen; off = i + 1, bpos = e + 1) {
		for (i = off; cin[i] != '\n'; i++)
			;
		for (e = bpos; bout[e] != '\n'; e++)
			;
		switch (refused_verb(cin + off, i - off)) {
		case 1:
			check(memcmp(bout + bpos, tls ? "554 " : "502 ", 4) == 0);
			break;
		case 2:
			check(memcmp(bout + bpos, "502 ", 4) == 0);
			break;
		default:
			check(memcmp(bout + bpos, "250 ", 4) == 0);
			check(strtoul(bout + bpos + 4, NULL, 10) == fwd++);
		}
	}
}

HARNESS int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int tls, relay = 0, cmdmode;
	size_t bufsize, off;
	const char *p;

	if (size < 4)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.level = data[0] & 1 ? PROTO_LEVEL_ENCRYPT : PROTO_LEVEL_MAY;
	cfg.implicit_tls = (data[0] >> 1) & 1;
	cfg.hostname = "mx.example.test";
	cfg.identity = (data[0] >> 6) & 1 ? PROTO_IDENT_XCLIENT : PROTO_IDENT_NONE;
	cfg.caps =
	    (data[0] >> 5) & 1 ? "PIPELINING\nSTARTTLS\nAUTH PLAIN\nXCLIENT NAME\nCHUNKING" : NULL;
	tls = cfg.implicit_tls || ((data[0] >> 2) & 1);
	cmdmode = (data[0] >> 3) & 1;
	honest = (data[0] >> 4) & 1;
	bufsize = 64 + RESERVE + (size_t)data[1] * 4;
	rng = (uint32_t)data[2] << 8 | data[3] | 1u << 20;
	p = (const char *)data + 4;
	size -= 4;

	pick_peer();
	backend_and_probe(p, size);
	backend_scripted((const unsigned char *)p, size);
	if (cmdmode) {
		P->init(state, &cfg, tls);
		if (cfg.implicit_tls && cfg.identity == PROTO_IDENT_XCLIENT) {
			/* the core ran the backend dialogue; the greeting it hands over is
			 * what relay_commands() puts first in the backend's stream */
			struct proto_out out = {0}, to_client = {0};
			check(P->backend_line(state, &cfg, peerp, "220 g\r\n", 7, &out,
			                      &to_client) == PROTO_B_SEND);
			check(P->backend_line(state, &cfg, peerp, "250 h\r\n", 7, &out,
			                      &to_client) == PROTO_B_DONE);
			check(to_client.len == 7 && memcmp(to_client.data, "220 g\r\n", 7) == 0);
		}
		relay_commands((const unsigned char *)p, size, bufsize, tls);
		return 0;
	}
	off = 0;
	if (!cfg.implicit_tls) {
		P->init(state, &cfg, 0);
		tls = 0;
		off = dialogue(p, size, &tls, &relay);
	}
	if (cfg.implicit_tls || !relay) {
		/* relay from a fresh state on the whole input */
		P->init(state, &cfg, tls);
		off = 0;
	}
	relay_raw(p + off, size - off, bufsize);
	return 0;
}
