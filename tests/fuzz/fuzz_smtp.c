/* libFuzzer target for protocols/smtp.c.
 *
 * Input: 4 control bytes, then data.
 *   c0 bit 0: level encrypt, bit 1: implicit TLS, bit 2: relay under TLS,
 *      bit 3: command-stream mode, bit 4: honest core (headroom, `full` only when
 *      full), bit 5: a learned capability list instead of the defaults
 *   c1: relay buffer size (128..1148), c2 c3: PRNG seed for chunk sizes and flushes.
 *
 * Raw mode drives the pre-TLS dialogue line by line as the core does, then both relay
 * filters over the data as client and backend streams, in random chunks. Command mode
 * builds a client command stream from the data, answers every forwarded line with a
 * simulated backend and checks that no STARTTLS/XCLIENT/XFORWARD line ever reaches
 * it; with an honest core (headroom, `full` only when full) also that every client
 * line gets exactly one reply, in order, and nothing stays stuck.
 */
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

/* Coverage should guide towards smtp.c, not the harness's own loops (they are most of
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

/* --- pre-TLS dialogue, backend dialogue, probe --- */

HARNESS static size_t
dialogue(const char *p, size_t n, int *tls, int *relay)
{
	struct proto_out out = {0};
	size_t off = 0;
	const char *lf;

	P->greeting(state, &cfg, &out);
	check(out.len <= PROTO_OUT_MAX);
	while (off < n) {
		size_t rest = n - off, len;

		lf = memchr(p + off, '\n', rest < P->max_line ? rest : P->max_line);
		if (lf == NULL)
			break; /* too long (the core closes) or unfinished */
		len = (size_t)(lf - (p + off)) + 1;
		out.len = 0;
		enum proto_action a = P->client_line(state, &cfg, p + off, len, &out);
		check(out.len <= PROTO_OUT_MAX);
		check(a >= PROTO_CONTINUE && a <= PROTO_CLOSE);
		if (a == PROTO_BACKEND) {
			check(out.len == 0);
			out.len = 0;
			check(P->backend_line(state, &cfg, "220 b\r\n", 7, &out) != PROTO_B_FAIL);
			if (out.len > 0)
				check(P->backend_line(state, &cfg, "250 b\r\n", 7, &out) ==
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

	P->init(other, &cfg, 0);
	check(P->probe_state_size <= sizeof(state));
	for (size_t off = 0; off < n && !(bdone && pdone); off = (size_t)(lf - p) + 1) {
		if ((lf = memchr(p + off, '\n', n - off)) == NULL)
			lf = p + n - 1;
		size_t len = (size_t)(lf - (p + off)) + 1;
		if (!bdone) {
			out.len = 0;
			enum proto_bstep s = P->backend_line(other, &cfg, p + off, len, &out);
			check(s >= PROTO_B_MORE && s <= PROTO_B_FAIL && out.len <= PROTO_OUT_MAX);
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
	cfg.caps =
	    (data[0] >> 5) & 1 ? "PIPELINING\nSTARTTLS\nAUTH PLAIN\nXCLIENT NAME\nCHUNKING" : NULL;
	tls = cfg.implicit_tls || ((data[0] >> 2) & 1);
	cmdmode = (data[0] >> 3) & 1;
	honest = (data[0] >> 4) & 1;
	bufsize = 64 + RESERVE + (size_t)data[1] * 4;
	rng = (uint32_t)data[2] << 8 | data[3] | 1u << 20;
	p = (const char *)data + 4;
	size -= 4;

	backend_and_probe(p, size);
	if (cmdmode) {
		P->init(state, &cfg, tls);
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
