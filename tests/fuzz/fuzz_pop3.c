/* libFuzzer target for protocols/pop3.c.
 *
 * Input: byte 0 picks the mode (bit 0 level, bit 1 implicit TLS, bit 2 tls, bit 3
 * command-stream model, bit 4 identity XCLIENT, bits 5-6 the client's address), bytes
 * 1..3 seed the chunking PRNG, the rest is the payload.
 *
 *  - dialogue: the payload as client lines (max_line enforced as the core does); no
 *    STLS/XCLIENT/XOIP, as ours or Dovecot's parser reads it, is ever handed over;
 *  - backend dialogue and probe: the payload as backend lines; with identity on, the
 *    XCLIENT line sent is exact, the answer is never shown, the implicit greeting is;
 *  - raw relay: payload split into a client and a backend stream, both filters driven
 *    through a simulated relay buffer (write backlog, random reads, random `full`);
 *  - model relay (bit 3): the payload picks commands from a table with known replies;
 *    a causal backend answers each line it received. Exact output is checked in both
 *    directions: no STLS/XCLIENT/XOIP line ever reaches the backend, its refusal sits
 *    exactly where the backend's reply would have been, and nothing deadlocks. With
 *    identity on, the backend dialogue (XCLIENT, Dovecot's answer) runs first, and on
 *    implicit listeners its greeting leads the backend stream, [XCLIENT] removed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

#define check(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

/* The harness's own branches are not what the fuzzer should chase (and tracing them
 * costs most of the run time): coverage is for protocols/pop3.c. */
#if defined(__clang__)
#define HARNESS __attribute__((no_sanitize("coverage")))
#else
#define HARNESS
#endif

static const struct protocol *const P = &protocol_pop3;

static union {
	max_align_t align;
	unsigned char b[4096];
} st, pst;

static uint32_t rng;

HARNESS static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return n ? rng % n : 0;
}

/* --- pre-TLS dialogue, backend dialogue, probe --- */

HARNESS static int
first_word_is(const char *s, size_t n, const char *w)
{
	size_t i = 0, wl = strlen(w);

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return n - i >= wl && strncasecmp(s + i, w, wl) == 0 &&
	       (n - i == wl || strchr(" \t\r\n", s[i + wl]) != NULL || s[i + wl] == '\0');
}

/* Dovecot 2.3.19 pop3-login's reading of a command name (client_read_cmd_name): CRs
 * skipped, ends at SP, LF, NUL or after 8 bytes, upper-cased. */
HARNESS static int
dovecot_cmd_is(const char *s, size_t n, const char *verb)
{
	char cmd[9];
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == ' ' || s[i] == '\n' || s[i] == '\0' || i >= 8)
			break;
		cmd[k++] = (char)toupper((unsigned char)s[i]);
	}
	return k == strlen(verb) && memcmp(cmd, verb, k) == 0;
}

/* A line that must never reach the backend, by either reading. */
HARNESS static int
never_line(const char *s, size_t n)
{
	static const char *const verbs[] = {"STLS", "XCLIENT", "XOIP"};
	size_t i;

	for (i = 0; i < 3; i++)
		if (first_word_is(s, n, verbs[i]) || dovecot_cmd_is(s, n, verbs[i]))
			return 1;
	return 0;
}

/* The client's address, as the core would give it, or one it must never give. */
static const struct proto_peer peers[4] = {
    {"203.0.113.7", 52114, "192.0.2.1", 995, 1},
    {"2001:db8::7", 40001, "2001:db8::1", 110, 1},
    {"192.0.2.55", 0, "192.0.2.1", 110, 0},
    {"192.0.2.55\r\nUSER x", 1, "", 1, 1},
};
static const struct proto_peer *peer;
static int peer_ok;

HARNESS static size_t
xclient_line(char *buf, size_t size)
{
	int n = peer->port
	            ? snprintf(buf, size, "XCLIENT ADDR=%s PORT=%u\r\n", peer->addr, peer->port)
	            : snprintf(buf, size, "XCLIENT ADDR=%s\r\n", peer->addr);

	check(n > 0 && (size_t)n < size);
	return (size_t)n;
}

/* Dovecot's answer to XCLIENT from outside login_trusted_networks. */
HARNESS static int
untrusted(const char *s, size_t n)
{
	static const char t[] = "+OK You are not from trusted IP";

	return n >= sizeof(t) - 1 && strncasecmp(s, t, sizeof(t) - 1) == 0;
}

HARNESS static int
out_is(const struct proto_out *o, const char *s, size_t n)
{
	return o->len == n && memcmp(o->data, s, n) == 0;
}

HARNESS static void
dialogue(const struct proto_config *cfg, const uint8_t *d, size_t n)
{
	static struct proto_out out;
	size_t i = 0;

	P->init(&st, cfg, 0);
	out.len = 0;
	P->greeting(&st, cfg, &out);
	check(out.len > 0 && out.len <= PROTO_OUT_MAX);
	while (i < n) {
		const uint8_t *nl = memchr(d + i, '\n', n - i);
		size_t len = nl != NULL ? (size_t)(nl - (d + i)) + 1 : n - i;
		enum proto_action a;

		if (len > P->max_line)
			return; /* the core answers too_long_reply and closes */
		out.len = 0;
		a = P->client_line(&st, cfg, (const char *)d + i, len, &out);
		check(a <= PROTO_CLOSE);
		check(out.len <= PROTO_OUT_MAX);
		i += len;
		if (a == PROTO_BACKEND) {
			check(out.len == 0);
			check(!never_line((const char *)d + i - len, len));
			return;
		}
		if (a == PROTO_CLOSE)
			return;
		if (a == PROTO_STARTTLS) {
			check(first_word_is((const char *)d + i - len, len, "STLS"));
			check(out.len > 0 && memcmp(out.data, "+OK", 3) == 0);
			P->init(&st, cfg, 1);
			out.len = 0;
			/* A pipelined line can never be answered pre-TLS again. */
			check(P->client_line(&st, cfg, "STLS\r\n", 6, &out) == PROTO_CLOSE);
			check(out.len == 0);
			return;
		}
		check(out.len > 0);
	}
}

/* What the probe learned is offered before TLS: bounded, terminated, with STLS. */
HARNESS static void
offer(const struct proto_config *cfg, const char *caps)
{
	static struct proto_out out;
	struct proto_config c2 = *cfg;

	c2.caps = caps;
	P->init(&st, &c2, 0);
	out.len = 0;
	check(P->client_line(&st, &c2, "CAPA\r\n", 6, &out) == PROTO_CONTINUE);
	check(out.len >= 9 && out.len <= PROTO_OUT_MAX);
	check(memcmp(out.data + out.len - 9, "STLS\r\n.\r\n", 9) == 0);
}

HARNESS static void
backend_and_probe(const struct proto_config *cfg, const uint8_t *d, size_t n)
{
	static struct proto_out out, tb, tc;
	static char caps[512], xc[128];
	size_t i = 0, capslen = 1 + rnd(sizeof(caps)), nb = 0, xl = xclient_line(xc, sizeof(xc));
	int probe_done = 0, b_done = 0, xclient = cfg->identity == PROTO_IDENT_XCLIENT;
	enum proto_bstep b;
	enum proto_probe p;

	P->init(&st, cfg, 1);
	P->probe_init(&pst, cfg);
	tc.len = 0;
	while (i < n) {
		const uint8_t *nl = memchr(d + i, '\n', n - i);
		size_t len = nl != NULL ? (size_t)(nl - (d + i)) + 1 : n - i;
		const char *line = (const char *)d + i;
		int ok = len >= 3 && strncasecmp(line, "+OK", 3) == 0;

		if (!b_done) {
			size_t tcl = tc.len;

			tb.len = 0;
			b = P->backend_line(&st, cfg, peer, line, len, &tb, &tc);
			check(b <= PROTO_B_FAIL && tb.len <= PROTO_OUT_MAX &&
			      tc.len <= PROTO_OUT_MAX);
			if (nb == 0) {
				/* The greeting: +OK or nothing; the client gets it on implicit
				 * listeners, byte-exact, and nothing else ever. */
				check(ok || b == PROTO_B_FAIL);
				check(ok && cfg->implicit_tls ? out_is(&tc, line, len)
				                              : tc.len == 0);
				if (ok && xclient)
					check(peer_ok ? b == PROTO_B_SEND && out_is(&tb, xc, xl)
					              : b == PROTO_B_FAIL && tb.len == 0);
				else
					check(tb.len == 0 &&
					      (b == PROTO_B_DONE || b == PROTO_B_FAIL));
			} else {
				/* The answer to XCLIENT: decides, is never shown, sends nothing. */
				check(tb.len == 0 && tc.len == tcl);
				check(b ==
				      (ok && !untrusted(line, len) ? PROTO_B_DONE : PROTO_B_FAIL));
			}
			nb++;
			b_done = b == PROTO_B_DONE || b == PROTO_B_FAIL;
			if (b_done) {
				/* A stray call after the decision is refused. */
				tb.len = 0;
				check(P->backend_line(&st, cfg, peer, "+OK\r\n", 5, &tb, &tc) ==
				      PROTO_B_FAIL);
				check(tb.len == 0);
			}
		}
		if (!probe_done) {
			out.len = 0;
			p = P->probe_line(&pst, cfg, line, len, &out, caps, capslen);
			check(p <= PROTO_P_FAIL && out.len <= PROTO_OUT_MAX);
			if (p == PROTO_P_DONE) {
				check(memchr(caps, '\0', capslen) != NULL);
				check(out.len == 6 && memcmp(out.data, "QUIT\r\n", 6) == 0);
				offer(cfg, caps);
			}
			probe_done = p == PROTO_P_DONE || p == PROTO_P_FAIL;
		}
		i += len;
	}
}

/* --- simulated relay buffer, as the core keeps it --- */

#define BUFMAX 2048
#define OUTMAX (1 << 18)

struct dir {
	char buf[BUFMAX];
	size_t size; /* this run's buffer size */
	size_t w;    /* final bytes not written yet, at buf[0..w) */
	size_t len;  /* unexamined bytes, at buf[w..w+len) */
	const char *src;
	size_t srclen, fed;
	char *out;
	size_t outlen;
};

HARNESS static int
dir_write(struct dir *d, size_t n)
{
	if (n > d->w)
		n = d->w;
	check(d->outlen + n <= OUTMAX);
	memcpy(d->out + d->outlen, d->buf, n);
	d->outlen += n;
	memmove(d->buf, d->buf + n, d->w - n + d->len);
	d->w -= n;
	return n > 0;
}

/* One relay round for a direction: read up to n, filter. rawfull: `full` is random. */
HARNESS static int
dir_step(struct dir *d, proto_filter_fn f, const struct proto_config *cfg, size_t avail, size_t n,
         int rawfull)
{
	size_t room = d->size - d->w - d->len, cap, len0, fin;
	int full;

	if (avail > d->srclen)
		avail = d->srclen;
	if (n > avail - d->fed)
		n = avail - d->fed;
	if (n > room)
		n = room;
	memcpy(d->buf + d->w + d->len, d->src + d->fed, n);
	d->len += n;
	d->fed += n;
	cap = d->size - d->w;
	/* The contract: full only when unexamined bytes fill the whole buffer. */
	full = rawfull ? (int)rnd(4) == 0 : (d->w == 0 && d->len == d->size);
	len0 = d->len;
	fin = f(&st, cfg, d->buf + d->w, &d->len, cap, full);
	check(fin <= d->len);
	check(d->len <= cap);
	d->w += fin;
	d->len -= fin;
	return n > 0 || fin > 0 || d->len != len0;
}

HARNESS static void
relay_raw(const struct proto_config *cfg, int tls, const uint8_t *d, size_t n)
{
	static struct dir c, b;
	static char cout[OUTMAX], bout[OUTMAX];
	size_t k = n ? rnd((uint32_t)n + 1) : 0;
	int i, idle = 0;

	memset(&c, 0, sizeof(c));
	memset(&b, 0, sizeof(b));
	c.src = (const char *)d;
	c.srclen = k;
	b.src = (const char *)d + k;
	b.srclen = n - k;
	c.out = cout;
	b.out = bout;
	c.size = 8 + rnd(BUFMAX - 7);
	b.size = 8 + rnd(BUFMAX - 7);
	P->init(&st, cfg, tls);
	if ((!cfg->implicit_tls || cfg->identity != PROTO_IDENT_NONE) && rnd(2)) {
		static struct proto_out tb, tc;
		tb.len = tc.len = 0;
		if (P->backend_line(&st, cfg, peer, "+OK\r\n", 5, &tb, &tc) == PROTO_B_SEND)
			P->backend_line(&st, cfg, peer, "+OK Updated\r\n", 13, &tb, &tc);
	}
	for (i = 0; i < 20000 && idle < 8; i++) {
		int p = 0;

		/* Partial writes, but all of it once nothing moved: idle means stuck. */
		p |= dir_write(&c, idle || rnd(4) ? c.w : rnd((uint32_t)c.w + 1));
		p |= dir_write(&b, idle || rnd(4) ? b.w : rnd((uint32_t)b.w + 1));
		p |= dir_step(&c, P->client_filter, cfg, c.srclen, 1 + rnd(300), 1);
		p |= dir_step(&b, P->backend_filter, cfg, b.srclen, 1 + rnd(300), 1);
		p |= dir_step(&c, P->client_filter, cfg, c.srclen, 0, 1);
		idle = p ? 0 : idle + 1;
	}
}

/* --- command-stream model --- */

struct cmd {
	const char *line;  /* without line ending */
	const char *reply; /* backend's reply; NULL: refused, never reaches the backend */
	const char *want;  /* what the client gets; NULL: the reply, or the STLS refusal */
};

static const struct cmd cmds[] = {
    {"STLS", NULL, NULL},
    {"stls", NULL, NULL},
    {"STLS x", NULL, NULL},
    {" STLS", NULL, NULL},
    {"\tsTlS\t", NULL, NULL},
    {"STLS\r", NULL, NULL},
    {"NOOP", "+OK\r\n", NULL},
    {"STAT", "+OK 2 320\r\n", NULL},
    {"STL", "-ERR Unknown command: STL\r\n", NULL},
    {"STLSX", "-ERR Unknown command: STLSX\r\n", NULL},
    {"XSTLS", "-ERR Unknown command: XSTLS\r\n", NULL},
    {"STARTTLS", "-ERR Unknown command: STARTTLS\r\n", NULL},
    {"", "-ERR Unknown command: \r\n", NULL},
    {"CAPA", "+OK\r\nCAPA\r\nSTLS\r\nstls\r\nUSER\r\n.\r\n", "+OK\r\nCAPA\r\nUSER\r\n.\r\n"},
    {"capa x", "-ERR no\r\n", NULL},
    {"LIST", "+OK 2 messages\r\n1 200\r\n+OK\r\n.\r\n", NULL},
    {"LIST 1", "+OK 1 200\r\n", NULL},
    {"UIDL", "+OK\r\n1 a\r\n-ERR\r\n.\n", NULL},
    {"UIDL 9", "-ERR no such message\r\n", NULL},
    {"RETR 1", "+OK\r\nSTLS\r\n..\r\n+OK\r\n* CAPABILITY STARTTLS\r\n.STLS\r\n.\r\n", NULL},
    {"RETR 9", "-ERR no such message\r\n", NULL},
    {"TOP 1 0", "+OK\r\n\r\n.\r\n", NULL},
    {"AUTH", "+OK\r\nPLAIN\r\n-ERR\r\n.\r\n", NULL},
    {"USER alice", "+OK\r\n", NULL},
    {"PASS secret", "-ERR [AUTH] Authentication failed.\r\n", NULL},
    {"XCLIENT ADDR=198.51.100.66 PORT=1", NULL, "-ERR Unknown command.\r\n"},
    {"xoip 198.51.100.66", NULL, "-ERR Unknown command.\r\n"},
    {"XC\rLIENT ADDR=198.51.100.66", NULL, "-ERR Unknown command.\r\n"},
    {" XClient\tADDR=198.51.100.66", NULL, "-ERR Unknown command.\r\n"},
    {"X\rOIP 198.51.100.66", NULL, "-ERR Unknown command.\r\n"},
    {"XCLIENT", NULL, "-ERR Unknown command.\r\n"},
    {"XCLIEN\rTZ ADDR=198.51.100.66", NULL, "-ERR Unknown command.\r\n"},
    {"XCLIENTS", "-ERR Unknown command.\r\n", NULL},
    {"XC\r\rLIENT ADDR=198.51.100.66", "-ERR Unknown command.\r\n", NULL},
    {"XOIPX", "-ERR Unknown command.\r\n", NULL},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

HARNESS static const char *
refusal(int tls)
{
	return tls ? "-ERR TLS is already active.\r\n"
	           : "-ERR STLS not available on this connection.\r\n";
}

/* Commands per model run: well past the queue bound (32), and fast enough to fuzz. */
#define MODEL_MAX 96

HARNESS static void
relay_model(const struct proto_config *cfg, int tls, const uint8_t *d, size_t n)
{
	static char csrc[OUTMAX], bsrc[OUTMAX], want_c[OUTMAX], want_b[OUTMAX];
	static char cout[OUTMAX], bout[OUTMAX];
	static size_t rel[MODEL_MAX + 1];
	static struct dir c, b;
	static struct proto_out tb, tc;
	const char *greet;
	size_t i, cl = 0, bl = 0, wc = 0, wb = 0, nrel = 0, lines = 0, seen = 0, j, gl;
	int k, idle = 0;

	if (n > MODEL_MAX)
		n = MODEL_MAX;
	rel[nrel++] = 0;
	for (i = 0; i < n; i++) {
		const struct cmd *m = &cmds[d[i] % NCMDS];
		const char *eol = d[i] & 0x80 ? "\n" : "\r\n";
		size_t ll = strlen(m->line), el = strlen(eol);
		const char *got = m->want != NULL    ? m->want
		                  : m->reply != NULL ? m->reply
		                                     : refusal(tls);

		memcpy(csrc + cl, m->line, ll);
		memcpy(csrc + cl + ll, eol, el);
		cl += ll + el;
		if (m->reply != NULL) {
			memcpy(want_c + wc, m->line, ll);
			memcpy(want_c + wc + ll, eol, el);
			wc += ll + el;
			memcpy(bsrc + bl, m->reply, strlen(m->reply));
			bl += strlen(m->reply);
			rel[nrel++] = bl;
		}
		memcpy(want_b + wb, got, strlen(got));
		wb += strlen(got);
	}
	memset(&c, 0, sizeof(c));
	memset(&b, 0, sizeof(b));
	c.src = csrc;
	c.srclen = cl;
	b.src = bsrc;
	b.srclen = bl;
	c.out = cout;
	b.out = bout;
	/* Longer than any line: `full` must then never force a line through. */
	c.size = 64 + rnd(BUFMAX - 63);
	b.size = 96 + rnd(BUFMAX - 95);
	P->init(&st, cfg, tls);
	/* Dovecot's greeting to a trusted peer carries [XCLIENT]; the client never sees it. */
	greet = rnd(2) ? "+OK [XCLIENT] hi\r\n" : "+OK hi\r\n";
	gl = strlen(greet);
	tc.len = 0;
	if (cfg->identity == PROTO_IDENT_XCLIENT) {
		char xc[128];
		size_t xl = xclient_line(xc, sizeof(xc));

		tb.len = 0;
		if (!peer_ok) {
			check(P->backend_line(&st, cfg, peer, greet, gl, &tb, &tc) == PROTO_B_FAIL);
			check(tb.len == 0);
			return;
		}
		check(P->backend_line(&st, cfg, peer, greet, gl, &tb, &tc) == PROTO_B_SEND);
		check(out_is(&tb, xc, xl));
		tb.len = 0;
		check(P->backend_line(&st, cfg, peer, "+OK Updated\r\n", 13, &tb, &tc) ==
		      PROTO_B_DONE);
		check(tb.len == 0);
	} else if (!cfg->implicit_tls)
		check(P->backend_line(&st, cfg, peer, greet, gl, &tb, &tc) == PROTO_B_DONE);
	else
		proto_out_add(&tc, greet, gl); /* no backend dialogue: the stream brings it */
	check(cfg->implicit_tls ? out_is(&tc, greet, gl) : tc.len == 0);
	if (cfg->implicit_tls) {
		/* The greeting goes first in the backend stream (to_client, through the
		 * backend filter), and to the client without [XCLIENT]. */
		memmove(bsrc + gl, bsrc, bl);
		memcpy(bsrc, greet, gl);
		b.srclen = bl += gl;
		for (j = 0; j < nrel; j++)
			rel[j] += gl;
		memmove(want_b + 8, want_b, wb);
		memcpy(want_b, "+OK hi\r\n", 8);
		wb += 8;
	}
	for (k = 0; k < 400000 && idle < 4; k++) {
		int p = 0;

		/* The backend only answers what it received: released replies. */
		for (; seen < c.outlen; seen++)
			lines += c.out[seen] == '\n';
		check(lines < nrel);
		p |= dir_write(&c, idle || rnd(3) ? c.w : rnd((uint32_t)c.w + 1));
		p |= dir_write(&b, idle || rnd(3) ? b.w : rnd((uint32_t)b.w + 1));
		p |= dir_step(&c, P->client_filter, cfg, c.srclen, 1 + rnd(128), 0);
		p |= dir_step(&b, P->backend_filter, cfg, rel[lines], 1 + rnd(128), 0);
		p |= dir_step(&c, P->client_filter, cfg, c.srclen, 0, 0);
		idle = p ? 0 : idle + 1;
	}
	dir_write(&c, c.w);
	dir_write(&b, b.w);
	/* Everything went through: nothing held forever. */
	check(c.fed == c.srclen && c.len == 0);
	check(b.fed == b.srclen && b.len == 0);
	/* No STLS/XCLIENT/XOIP command line reached the backend, as we or Dovecot read it. */
	for (i = 0; i < c.outlen;) {
		const char *nl = memchr(c.out + i, '\n', c.outlen - i);
		size_t ll = nl != NULL ? (size_t)(nl - (c.out + i)) + 1 : c.outlen - i;

		check(!never_line(c.out + i, ll));
		i += ll;
	}
	check(c.outlen == wc && memcmp(c.out, want_c, wc) == 0);
	check(b.outlen == wb && memcmp(b.out, want_b, wb) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_config cfg = {.hostname = "pop.example.test"};
	int tls, model;

	if (size < 4)
		return 0;
	cfg.level = data[0] & 1 ? PROTO_LEVEL_MAY : PROTO_LEVEL_ENCRYPT;
	cfg.implicit_tls = (data[0] >> 1) & 1;
	tls = cfg.implicit_tls || ((data[0] >> 2) & 1);
	model = (data[0] >> 3) & 1;
	cfg.identity = (data[0] >> 4) & 1 ? PROTO_IDENT_XCLIENT : PROTO_IDENT_NONE;
	peer = &peers[(data[0] >> 5) & 3];
	peer_ok = ((data[0] >> 5) & 3) != 3;
	rng = ((uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3]) | 1;
	data += 4;
	size -= 4;
	if (size > 4096)
		size = 4096;
	if (model) {
		relay_model(&cfg, tls, data, size);
		return 0;
	}
	dialogue(&cfg, data, size);
	backend_and_probe(&cfg, data, size);
	relay_raw(&cfg, tls, data, size);
	return 0;
}
