/* libFuzzer target for protocols/imap.c and imap_relay.c.
 *
 * Input: 4 header bytes, then data.
 *   byte 0: bit 0 level (encrypt), bit 1 implicit TLS, bit 2 relay under TLS,
 *           bit 3 command-stream mode, bits 4-5 capability list, bits 6-7 buffer size
 *   bytes 1-3: seed for chunk sizes, `full` and draining; bit 7 of byte 1 also turns on
 *           the identity (IMAP ID) for the backend dialogue
 * Default mode: the data is a pre-TLS dialogue, a backend dialogue, a probe transcript
 * and both relay streams (split by the seed), fed in random chunks through a simulation
 * of the core's buffers. After a backend dialogue that ends in DONE, the relay goes on
 * with its state and what it passed to the client goes first in the backend stream. Command-stream
 * mode: each data byte picks a command line; the client filter must never forward a STARTTLS and
 * must answer each one exactly once, and a line too long for the smaller buffers passes whole or
 * is answered (at most once when untagged: that answer waits for the backend's).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

/* The harness's own loops need no coverage feedback; it only slows the runs down. */
#define HARNESS __attribute__((no_sanitize("coverage")))

static const struct protocol *const P = &protocol_imap;
static _Alignas(max_align_t) unsigned char st[16384];
static _Alignas(max_align_t) unsigned char pst[4096];

static uint32_t rng;

HARNESS static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return n ? rng % n : 0;
}

static const char *const caps_choice[] = {
    NULL,
    "",
    "IMAP4rev1\nSASL-IR\nLOGIN-REFERRALS\nID\nENABLE\nIDLE\nLITERAL+\nSTARTTLS\nAUTH=PLAIN",
    "imap4rev1 LOGINDISABLED LITERAL- AUTH=GSSAPI ]bad X(Y\r\nMOVE",
};

/* --- the core's relay buffers, simplified --- */

#define BUF_MAX 16384
struct dir {
	char buf[BUF_MAX];
	size_t unw; /* final, not yet written: buf[0..unw) */
	size_t len; /* examined region: buf[unw..unw+len) */
	size_t outlen;
	char out[1 << 17];
};
static struct dir dirs[2];
static size_t bufsz;
static int drain_all, eof[2];

HARNESS static void
filter(const struct proto_config *cfg, int d)
{
	struct dir *x = &dirs[d];
	proto_filter_fn fn = d ? P->backend_filter : P->client_filter;
	size_t cap = bufsz - x->unw, len = x->len, f, w;
	/* as proxy/relay.c: nothing can be sent and nothing can arrive, or end of input */
	int full = (x->unw == 0 && x->len == bufsz) || eof[d];

	f = fn(st, cfg, x->buf + x->unw, &len, cap, full);
	CHECK(len <= cap);
	CHECK(f <= len);
	x->unw += f;
	x->len = len - f;
	/* the peer takes some of what is final */
	w = drain_all || rnd(4) == 0 ? x->unw : rnd((uint32_t)x->unw + 1);
	if (x->outlen + w <= sizeof(x->out)) {
		memcpy(x->out + x->outlen, x->buf, w);
		x->outlen += w;
	}
	memmove(x->buf, x->buf + w, x->unw + x->len - w);
	x->unw -= w;
}

HARNESS static void
round3(const struct proto_config *cfg)
{
	filter(cfg, 0);
	filter(cfg, 1);
	filter(cfg, 0);
}

HARNESS static void
relay(const struct proto_config *cfg, const uint8_t *in[2], size_t n[2])
{
	size_t k, room;
	int d, i, stall = 0;

	dirs[0].unw = dirs[0].len = dirs[0].outlen = 0;
	dirs[1].unw = dirs[1].len = dirs[1].outlen = 0;
	drain_all = eof[0] = eof[1] = 0;
	/* input held for an answer that never comes is a stall, not a hang */
	while ((n[0] > 0 || n[1] > 0) && stall < 64) {
		stall++;
		for (d = 0; d < 2; d++) {
			struct dir *x = &dirs[d];

			room = bufsz - x->unw - x->len;
			k = rnd(8) == 0 ? room : rnd(64) + 1;
			if (k > room)
				k = room;
			if (k > n[d])
				k = n[d];
			if (k > 0)
				stall = 0;
			memcpy(x->buf + x->unw + x->len, in[d], k);
			x->len += k;
			in[d] += k;
			n[d] -= k;
			eof[d] = n[d] == 0 && rnd(2);
		}
		round3(cfg);
	}
	/* end of input: everything final is written; run until nothing moves */
	drain_all = eof[0] = eof[1] = 1;
	for (i = 0, k = 1; i < 4096 && k > 0; i++) {
		k = dirs[0].outlen + dirs[1].outlen;
		round3(cfg);
		k = dirs[0].outlen + dirs[1].outlen - k;
	}
	/* at end of input nothing stays in the backend stream (the client's may wait) */
	CHECK(dirs[1].len == 0 && dirs[1].unw == 0);
}

/* --- pre-TLS and backend dialogues, probe --- */

static void
check_out(const struct proto_out *o)
{
	CHECK(o->len <= PROTO_OUT_MAX);
}

/* Calls fn for each line of data the way the core cuts them (max_line, LF). */
static void
dialogue(const struct proto_config *cfg, const uint8_t *data, size_t size)
{
	static struct proto_out out;
	size_t i = 0, n;
	const uint8_t *lf;
	enum proto_action a;

	P->init(st, cfg, 0);
	out.len = 0;
	P->greeting(st, cfg, &out);
	check_out(&out);
	CHECK(out.len >= 2 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
	while (i < size) {
		lf = memchr(data + i, '\n', size - i);
		n = lf ? (size_t)(lf - (data + i)) + 1 : size - i;
		if (n > P->max_line)
			return; /* too_long_reply, close */
		out.len = 0;
		a = P->client_line(st, cfg, (const char *)data + i, n, &out);
		check_out(&out);
		CHECK(a >= PROTO_CONTINUE && a <= PROTO_CLOSE);
		CHECK(out.len == 0 || memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
		i += n;
		if (a == PROTO_BACKEND) {
			CHECK(cfg->level == PROTO_LEVEL_MAY && out.len == 0);
			return;
		}
		if (a == PROTO_STARTTLS) {
			P->init(st, cfg, 1);
			out.len = 0;
			if (i < size)
				CHECK(P->client_line(st, cfg, (const char *)data + i,
				                     size - i < 64 ? size - i : 64,
				                     &out) == PROTO_CLOSE &&
				      out.len == 0);
			return;
		}
		if (a == PROTO_CLOSE)
			return;
	}
}

/* Is o one well-formed "mailedge1 ID (...)" line: quoted strings in pairs, escapes only
 * for '"' and '\', nothing that could end the line or the string early? */
HARNESS static int
id_line_ok(const struct proto_out *o)
{
	static const char head[] = "mailedge1 ID (";
	size_t i = sizeof(head) - 1, strings = 0;
	const char *p = o->data;

	if (o->len < i + 3 || memcmp(p, head, i) != 0 || memcmp(p + o->len - 3, ")\r\n", 3) != 0)
		return 0;
	while (i < o->len - 3) {
		if (strings > 0 && p[i++] != ' ')
			return 0;
		if (p[i++] != '"')
			return 0;
		while (i < o->len - 3 && p[i] != '"') {
			if (p[i] == '\\' && (p[i + 1] == '"' || p[i + 1] == '\\'))
				i++;
			else if (p[i] == '\\' || p[i] < 0x20 || p[i] >= 0x7f)
				return 0;
			i++;
		}
		if (i >= o->len - 3)
			return 0;
		i++;
		strings++;
	}
	return strings > 0 && strings % 2 == 0 && strings <= 8;
}

static char peer_addr[320];
static struct proto_out to_client;

/* The core's backend dialogue; returns the last step. The state stays as the core leaves
 * it for the relay. Half the time a real greeting comes first, so that the data is the
 * answer to ID (seeds rarely start with one), and then, half the time, our tagged
 * answer after it. */
static enum proto_bstep
backend_dialogue(const struct proto_config *cfg, const uint8_t *data, size_t size, int tls)
{
	static struct proto_out out;
	static const struct proto_peer peers[] = {
	    {"203.0.113.7", 52114, "192.0.2.1", 143, 1},
	    {"2001:db8::7", 40001, "2001:db8::1", 993, 1},
	    {NULL, 0, NULL, 0, 0},
	};
	static const char *const greetings[] = {
	    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
	    "AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
	    "* OK ready\n",
	};
	static const char *const answers[] = {
	    "mailedge1 OK ID completed.\r\n",
	    "mailedge1 NO x\r\n",
	    "mailedge1 BAD Error in IMAP command ID: Unknown command.\n",
	    "* BYE Input buffer full, aborting\r\n",
	};
	static uint8_t buf[4096 + 256];
	struct proto_peer fuzzed = {peer_addr, 65535, "192.0.2.1", 0, 1};
	const struct proto_peer *peer;
	size_t i = 0, n, k, greet = 0, greetlen = 0;
	const uint8_t *lf;
	enum proto_bstep b = PROTO_B_MORE;
	int sent = 0, greeted = 0;

	/* a peer address made of the input: quoting must hold whatever it is */
	k = size < sizeof(peer_addr) - 1 ? size : sizeof(peer_addr) - 1;
	k = rnd((uint32_t)k + 1);
	memcpy(peer_addr, data, k);
	peer_addr[k] = '\0';
	k = rnd(4);
	peer = k < 3 ? &peers[k] : &fuzzed;
	if (k == 2 && rnd(2))
		peer = NULL;

	if (rnd(2) && size <= sizeof(buf) - 256) {
		const char *g = greetings[rnd(2)], *a = rnd(2) ? answers[rnd(4)] : "";

		memcpy(buf, g, strlen(g));
		memcpy(buf + strlen(g), data, size);
		memcpy(buf + strlen(g) + size, a, strlen(a));
		data = buf;
		size += strlen(g) + strlen(a);
	}
	P->init(st, cfg, tls);
	to_client.len = 0;
	while (i < size) {
		lf = memchr(data + i, '\n', size - i);
		n = lf ? (size_t)(lf - (data + i)) + 1 : size - i;
		if (n > 4096)
			return PROTO_B_FAIL; /* the core's BACKEND_LINE_MAX */
		out.len = 0;
		b = P->backend_line(st, cfg, peer, (const char *)data + i, n, &out, &to_client);
		check_out(&out);
		check_out(&to_client);
		CHECK(b >= PROTO_B_MORE && b <= PROTO_B_FAIL);
		if (out.len > 0) {
			/* one ID, right after the greeting, only with the identity on */
			CHECK(cfg->identity == PROTO_IDENT_IMAP_ID && !sent && !greeted);
			CHECK(b == PROTO_B_SEND && id_line_ok(&out));
			sent = 1;
		}
		if (!greeted && b != PROTO_B_MORE) {
			greeted = 1;
			greet = i;
			greetlen = n;
		}
		if (b == PROTO_B_DONE || b == PROTO_B_FAIL)
			break;
		i += n;
	}
	/* the client gets the backend's greeting, byte for byte, on implicit listeners
	 * only, and never a byte of the answer to ID */
	if (b == PROTO_B_DONE && cfg->implicit_tls) {
		CHECK(to_client.len >= greetlen &&
		      memcmp(to_client.data, data + greet, greetlen) == 0);
		CHECK(to_client.len == greetlen ||
		      (to_client.len == greetlen + 2 && data[greet + greetlen - 1] != '\n' &&
		       memcmp(to_client.data + greetlen, "\r\n", 2) == 0));
	} else if (b == PROTO_B_DONE)
		CHECK(to_client.len == 0);
	return b;
}

static void
probe(const struct proto_config *cfg, const uint8_t *data, size_t size)
{
	static struct proto_out out;
	char caps[300];
	size_t capslen = 1 + rnd(256), i = 0, n;
	const uint8_t *lf;
	enum proto_probe r;

	CHECK(P->probe_state_size <= sizeof(pst));
	memset(caps, 'Z', sizeof(caps));
	P->probe_init(pst, cfg);
	while (i < size) {
		lf = memchr(data + i, '\n', size - i);
		n = lf ? (size_t)(lf - (data + i)) + 1 : size - i;
		out.len = 0;
		r = P->probe_line(pst, cfg, (const char *)data + i, n, &out, caps, capslen);
		check_out(&out);
		CHECK(r >= PROTO_P_MORE && r <= PROTO_P_FAIL);
		for (size_t j = capslen; j < sizeof(caps); j++)
			CHECK(caps[j] == 'Z');
		if (r == PROTO_P_DONE)
			CHECK(memchr(caps, '\0', capslen) != NULL);
		if (r == PROTO_P_DONE || r == PROTO_P_FAIL)
			return;
		i += n;
	}
}

/* --- command-stream mode --- */

static const char *const cmds[] = {
    "a NOOP",
    "b STARTTLS",
    "c starttls",
    "d SELECT INBOX",
    "e STARTTLS x",
    "f  StartTLS",
    "g LIST \"\" *",
    "STARTTLS",
    " STARTTLS",
    "h STARTTLSX",
    "i CAPABILITY",
    "DONE",
    "j UID FETCH 1:* (FLAGS)",
    "k STARTTLS\t",
};
/* Blanks after a tag ("l") or a tag too long to remember: no command word within the
 * smaller buffers, so the line may be a STARTTLS cut short. */
#define LONG_BLANKS 600

/* Is this forwarded line (without its line end) one the backend would read as STARTTLS? */
HARNESS static int
is_starttls(const char *p, size_t n)
{
	size_t t = 0, w, e;

	while (t < n && p[t] != ' ' && p[t] != '\r')
		t++;
	for (w = t; w < n && p[w] == ' '; w++)
		;
	for (e = w; e < n && p[e] != ' ' && p[e] != '\r'; e++)
		;
	return e - w == 8 && strncasecmp(p + w, "STARTTLS", 8) == 0;
}

HARNESS static size_t
count_lines(const char *p, size_t n, int starttls_only, const char *needle)
{
	size_t i = 0, c = 0, l;
	const char *lf;

	while (i < n) {
		lf = memchr(p + i, '\n', n - i);
		l = lf ? (size_t)(lf - (p + i)) : n - i;
		if (starttls_only ? is_starttls(p + i, l)
		                  : memmem(p + i, l, needle, strlen(needle)) != NULL)
			c++;
		i += l + 1;
	}
	return c;
}

static char stream[2][128 * (140 + LONG_BLANKS)];

static void
command_stream(const struct proto_config *cfg, int tls, const uint8_t *data, size_t size)
{
	size_t n[2] = {0, 0}, total[2], i, l;
	const uint8_t *in[2];
	const char *c;
	unsigned k;

	/* a few hundred commands show every interleaving the chunking can produce */
	for (i = 0; i < size && i < 128; i++) {
		k = data[i] & 0x7f;
		c = cmds[k % (sizeof(cmds) / sizeof(cmds[0]))];
		if (k >= 112) { /* a tag too long to remember */
			memset(stream[0] + n[0], 't', 130);
			n[0] += 130;
			c = strchr(c, ' ') != NULL ? strchr(c, ' ') : " NOOP";
		}
		if (k >= 104 && k < 120)
			c = k < 112 ? "l" : "";
		l = strlen(c);
		memcpy(stream[0] + n[0], c, l);
		n[0] += l;
		if (k >= 104 && k < 120) {
			memset(stream[0] + n[0], ' ', LONG_BLANKS);
			n[0] += LONG_BLANKS;
		}
		l = data[i] & 0x80 ? 1 : 2;
		memcpy(stream[0] + n[0], &"\r\n"[2 - l], l);
		n[0] += l;
		if (data[i] & 1) {
			memcpy(stream[1] + n[1], "* 1 EXISTS\r\nz OK done\r\n", 23);
			n[1] += 23;
		}
	}
	P->init(st, cfg, tls);
	in[0] = (const uint8_t *)stream[0];
	in[1] = (const uint8_t *)stream[1];
	total[0] = n[0];
	total[1] = n[1];
	relay(cfg, in, n);
	CHECK(n[0] == 0 && n[1] == 0 && dirs[0].len == 0 && dirs[1].len == 0);
	/* every STARTTLS removed and answered exactly once; nothing else lost */
	CHECK(count_lines(dirs[0].out, dirs[0].outlen, 1, NULL) == 0);
	CHECK(count_lines(stream[0], total[0], 1, NULL) ==
	      count_lines(dirs[1].out, dirs[1].outlen, 0,
	                  tls ? " BAD TLS is already active." : " BAD STARTTLS not available"));
	CHECK(count_lines(dirs[0].out, dirs[0].outlen, 0, "NOOP") ==
	      count_lines(stream[0], total[0], 0, "NOOP"));
	CHECK(count_lines(dirs[1].out, dirs[1].outlen, 0, "z OK done") == total[1] / 23);
	/* long blank lines: forwarded whole, or dropped and answered */
	CHECK(count_lines(dirs[0].out, dirs[0].outlen, 0, "l        ") +
	          count_lines(dirs[1].out, dirs[1].outlen, 0, "l BAD Command line too long") ==
	      count_lines(stream[0], total[0], 0, "l        "));
	CHECK(count_lines(dirs[0].out, dirs[0].outlen, 0, "t        ") +
	          count_lines(dirs[1].out, dirs[1].outlen, 0, "* BAD Command line too long") <=
	      count_lines(stream[0], total[0], 0, "t        "));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_config cfg = {PROTO_LEVEL_MAY, 0, "mail.example.test", NULL, NULL,
	                           PROTO_IDENT_NONE};
	static uint8_t bstream[BUF_MAX * 2];
	static const size_t sizes[] = {256, 512, 2048, BUF_MAX};
	const uint8_t *in[2];
	size_t n[2], split;
	int tls;

	if (size < 4)
		return 0;
	cfg.level = data[0] & 1 ? PROTO_LEVEL_ENCRYPT : PROTO_LEVEL_MAY;
	cfg.implicit_tls = (data[0] >> 1) & 1;
	cfg.caps = caps_choice[(data[0] >> 4) & 3];
	tls = cfg.implicit_tls || ((data[0] >> 2) & 1);
	bufsz = sizes[data[0] >> 6];
	cfg.identity = data[1] & 0x80 ? PROTO_IDENT_IMAP_ID : PROTO_IDENT_NONE;
	rng = ((uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3]) | 1;
	data += 4;
	size -= 4;
	if ((data - 4)[0] & 8) {
		command_stream(&cfg, tls, data, size);
		return 0;
	}
	dialogue(&cfg, data, size);
	probe(&cfg, data, size);
	split = size ? rnd((uint32_t)size + 1) : 0;
	in[0] = data;
	n[0] = split;
	in[1] = data + split;
	n[1] = size - split;
	/* as the core: the relay starts where the backend dialogue left the state, and what
	 * it passed on reaches the client through the backend filter first */
	if (backend_dialogue(&cfg, data, size, tls) == PROTO_B_DONE &&
	    to_client.len + n[1] <= sizeof(bstream)) {
		memcpy(bstream, to_client.data, to_client.len);
		memcpy(bstream + to_client.len, in[1], n[1]);
		in[1] = bstream;
		n[1] += to_client.len;
	} else
		P->init(st, &cfg, tls);
	relay(&cfg, in, n);
	return 0;
}
