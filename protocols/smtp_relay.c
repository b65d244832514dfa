/* SMTP relay filters (protocol.h, job 3). The state is struct smtp_state (smtp_int.h),
 * shared with the dialogues in smtp.c; the replies are the contract in BEHAVIOUR.md.
 *
 * The relay filters keep one queue of the commands the backend still has to answer.
 * It orders our own refusals behind the backend's replies to earlier pipelined
 * commands, tells which reply is the one to DATA (354 opens the body) or AUTH (334
 * makes the next client line SASL data), and which one lists EHLO capabilities.
 *
 * Where the filter and the backend could disagree on where a command starts, the
 * filter takes the side that keeps a refused command from reaching the backend: a
 * client that confuses the two only confuses its own session, while one that gets
 * XCLIENT past the filter speaks with mailedge's authority.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "smtp_int.h"

#define SMTP_BDAT_DIGITS 18 /* a chunk size that always fits in uint64_t */

/* Our own answer to a queued command the backend never sees; NULL for the others. */
static const char *
refusal(const struct smtp_state *st, int kind)
{
	switch (kind) {
	case K_REFUSE_TLS:
		return st->tls ? "554 5.5.1 Error: TLS already active\r\n"
		               : "502 5.5.2 Error: command not recognized\r\n";
	case K_REFUSE:
		return "502 5.5.2 Error: command not recognized\r\n";
	case K_TOO_LONG:
		return "500 5.5.0 Error: line too long\r\n";
	default:
		return NULL;
	}
}

/* --- relay: client -> backend --- */

static int
relay_space(char c)
{
	/* NUL ends a C string in many servers; CR/HT/VT/FF are whitespace to tokenisers */
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' ||
	       c == '\0';
}

/* "BDAT" SP size [SP "LAST"]: only a chunk the backend surely reads is skipped, or
 * a command hidden in it would reach the backend unfiltered. */
static int
bdat_size(const char *a, size_t n, uint64_t *size)
{
	size_t i = 0, d;

	while (i < n && a[i] == ' ')
		i++;
	for (*size = 0, d = 0; i < n && a[i] >= '0' && a[i] <= '9'; i++, d++)
		*size = *size * 10 + (uint64_t)(a[i] - '0');
	if (d == 0 || d > SMTP_BDAT_DIGITS)
		return 0;
	if (i < n && a[i] == ' ') {
		while (i < n && a[i] == ' ')
			i++;
		if (n - i >= 4 && strncasecmp(a + i, "LAST", 4) == 0)
			i += 4;
		while (i < n && a[i] == ' ')
			i++;
	}
	return i == n;
}

static const struct relay_cmd {
	const char *name;
	enum smtp_kind kind;
} relay_cmds[] = {
    {"STARTTLS", K_REFUSE_TLS}, {"XCLIENT", K_REFUSE}, {"XFORWARD", K_REFUSE}, {"EHLO", K_EHLO},
    {"HELO", K_HELO},           {"DATA", K_DATA},      {"AUTH", K_AUTH},       {"BDAT", K_BDAT},
};

/* A SASL line was passed: the client waits for the backend's next word on it. */
static void
relay_wait(struct smtp_state *st)
{
	q_push(st, K_AUTH);
	st->cmode = C_WAIT;
}

/* One complete command line; returns 1 when it must not reach the backend. */
static int
relay_command(struct smtp_state *st, const char *line, size_t len)
{
	size_t n = proto_strip_eol(line, len), i = 0, w, k;
	enum smtp_kind kind = K_REPLY;
	uint64_t size;

	while (i < n && relay_space(line[i]))
		i++;
	for (w = i; w < n && !relay_space(line[w]); w++)
		;
	for (k = 0; k < sizeof(relay_cmds) / sizeof(relay_cmds[0]); k++)
		if (word_eq(line + i, w - i, relay_cmds[k].name))
			kind = relay_cmds[k].kind;
	q_push(st, kind);
	switch (kind) {
	case K_REFUSE_TLS:
	case K_REFUSE:
		return 1;
	case K_DATA:
	case K_AUTH:
		st->cmode = C_WAIT; /* RFC 2920 3.1: the client waits for this reply */
		break;
	case K_EHLO:
	case K_HELO:
		st->chunking = 0; /* until an EHLO reply says otherwise */
		break;
	case K_BDAT:
		if (st->chunking && bdat_size(line + w, n - w, &size) && size > 0) {
			st->chunk = size;
			st->cmode = C_CHUNK;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* End of DATA as Postfix sees it: a "." line after any LF, ended by LF or CRLF
 * (RFC 5321 wants CRLF.CRLF only). Ending the body where a strict backend does not
 * only confuses the client's own session; not ending it where a lenient one does
 * would let commands after it pass unfiltered (SMTP smuggling). */
#define DOT_END 4
static int
dot_step(int s, char c)
{
	switch (s) {
	case 1: /* "\n" */
		return c == '.' ? 2 : c == '\n' ? 1 : 0;
	case 2: /* "\n." */
		return c == '\n' ? DOT_END : c == '\r' ? 3 : 0;
	case 3: /* "\n.\r" */
		return c == '\n' ? DOT_END : 0;
	default:
		return c == '\n' ? 1 : 0;
	}
}

static size_t
body_end(struct smtp_state *st, size_t n)
{
	st->cmode = C_CMD;
	st->dot = 0;
	q_push(st, K_REPLY); /* a slot is free: the reply to DATA left it */
	return n;
}

/* Body bytes at p, through the end-of-data line if it is there. Only the first and
 * last three bytes are stepped through; in between memchr finds the dots, and a dot
 * after LF is looked at. Dots are rarer than line ends in text and absent from base64,
 * so most buffers are one vectorised memchr (glibc's memmem steps byte by byte for a
 * two-byte needle: it cost 40% of an upload's CPU). */
static size_t
body_scan(struct smtp_state *st, const char *p, size_t n)
{
	size_t i, head = n < 3 ? n : 3, at;
	const char *q;
	int s = st->dot;

	for (i = 0; i < head; i++)
		if ((s = dot_step(s, p[i])) == DOT_END)
			return body_end(st, i + 1);
	if (n > 3) {
		for (q = p + 1; (q = memchr(q, '.', n - (size_t)(q - p))) != NULL; q++) {
			if (q[-1] != '\n')
				continue;
			at = (size_t)(q - p) + 1;
			if (at < n && p[at] == '\n')
				return body_end(st, at + 1);
			if (at + 1 < n && p[at] == '\r' && p[at + 1] == '\n')
				return body_end(st, at + 2);
		}
		for (s = 0, i = n - 3; i < n; i++)
			s = dot_step(s, p[i]);
	}
	st->dot = s;
	return n;
}

/* The modes that are not line by line. Returns the bytes passed; dropped bytes are
 * cut out of p (and *len). */
static size_t
client_bulk(struct smtp_state *st, char *p, size_t n, size_t *len)
{
	enum smtp_cmode mode = st->cmode;
	const char *lf;
	size_t k;

	if (mode == C_BODY)
		return body_scan(st, p, n);
	if (mode == C_CHUNK) {
		k = (uint64_t)n < st->chunk ? n : (size_t)st->chunk;
		if ((st->chunk -= k) == 0)
			st->cmode = C_CMD;
		return k;
	}
	/* the rest of a line too long to hold: SASL data passes, a command is dropped */
	lf = memchr(p, '\n', n);
	k = lf != NULL ? (size_t)(lf - p) + 1 : n;
	if (lf != NULL && mode == C_DROP)
		st->cmode = C_CMD;
	else if (lf != NULL)
		relay_wait(st);
	if (mode != C_DROP)
		return k;
	memmove(p, p + k, n - k);
	*len -= k;
	return 0;
}

size_t
smtp_client_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                   int full)
{
	struct smtp_state *st = state;
	size_t pos = 0, scan = st->cscan, n, k;
	int progress = 0;
	const char *lf;

	(void)cfg, (void)cap;
	st->cscan = 0;
	while (pos < *len) {
		n = *len - pos;
		/* every command needs a queue slot; the client waits for replies anyway */
		if (st->cmode == C_WAIT || (st->cmode == C_CMD && st->qlen == SMTP_QUEUE_MAX))
			return pos;
		if (st->cmode != C_CMD && st->cmode != C_SASL) {
			pos += client_bulk(st, buf + pos, n, len);
			progress = 1;
			continue;
		}
		if (pos > 0 || progress || scan > n)
			scan = 0;
		lf = memchr(buf + pos + scan, '\n', n - scan);
		scan = 0;
		if (lf == NULL) {
			if (!full || progress) {
				st->cscan = n;
				return pos;
			}
			/* the line fills the buffer: SASL data passes, a command this long
			 * is invalid and dropped whole, so no refused verb slips through */
			if (st->cmode == C_SASL)
				st->cmode = C_SASL_REST;
			else if (q_push(st, K_TOO_LONG))
				st->cmode = C_DROP;
			else
				return pos;
			continue;
		}
		k = (size_t)(lf - (buf + pos)) + 1;
		progress = 1;
		if (st->cmode == C_SASL) {
			pos += k;
			relay_wait(st);
		} else if (relay_command(st, buf + pos, k)) {
			memmove(buf + pos, buf + pos + k, n - k);
			*len -= k;
		} else
			pos += k;
	}
	return pos;
}

/* --- relay: backend -> client --- */

/* The reply to the queue's head is complete. */
static void
reply_done(struct smtp_state *st, int code)
{
	int kind = q_head(st);

	q_pop(st);
	if (st->cmode != C_WAIT)
		return;
	if (kind == K_DATA && code == 354) {
		st->cmode = C_BODY;
		st->dot = 1; /* the DATA line's LF */
	} else if (kind == K_AUTH && code == 334)
		st->cmode = C_SASL;
	else if (kind == K_DATA || kind == K_AUTH)
		st->cmode = C_CMD;
}

/* Between replies: our own answer, if it is its turn, goes in here. Returns -1 when
 * the buffer has no room for it yet. */
static int
inject(struct smtp_state *st, char *buf, size_t *len, size_t cap, size_t *pos)
{
	const char *msg = refusal(st, q_head(st));
	size_t m;

	if (msg == NULL)
		return 0;
	m = strlen(msg);
	if (*len > cap || m > cap - *len)
		return -1;
	memmove(buf + *pos + m, buf + *pos, *len - *pos);
	memcpy(buf + *pos, msg, m);
	*len += m;
	*pos += m;
	q_pop(st);
	return 1;
}

/* Hold an EHLO reply until its last line, then drop the lines advertising what is
 * refused here and fix the continuation marks. Returns 0: need more, 1: done, 2:
 * the reply does not fit in the buffer, pass it line by line unfiltered. */
static int
ehlo_reply(struct smtp_state *st, char *buf, size_t *len, size_t *pos, int can_stream)
{
	char *p = buf + *pos;
	size_t n = *len - *pos, end = 0, r, w, l, e, lastkept = 0, lastlen = 0;
	const char *lf;
	int last = 0, code, chunking = 0;

	while (!last) {
		if ((lf = memchr(p + end, '\n', n - end)) == NULL)
			return can_stream ? 2 : 0;
		l = (size_t)(lf - (p + end)) + 1;
		last = reply_last(p + end, proto_strip_eol(p + end, l));
		end += l;
	}
	code = reply_code(p, end);
	for (r = w = 0; r < end && code == 250; r += l) {
		l = (size_t)((const char *)memchr(p + r, '\n', end - r) - (p + r)) + 1;
		e = proto_strip_eol(p + r, l);
		if (r > 0 && e > 4 && cap_hidden(p + r + 4, e - 4, 0))
			continue;
		if (r > 0 && e > 4 && word_eq(p + r + 4, word_len(p + r + 4, e - 4), "CHUNKING"))
			chunking = 1;
		memmove(p + w, p + r, l);
		lastkept = w;
		lastlen = e;
		w += l;
	}
	if (code == 250) {
		if (lastlen > 3 && p[lastkept + 3] == '-')
			p[lastkept + 3] = ' ';
		memmove(p + w, p + end, n - end);
		*len -= end - w;
		end = w;
		st->chunking = chunking;
	}
	*pos += end;
	reply_done(st, code);
	return 1;
}

/* Collect the first bytes of a backend line: they say whether the reply goes on. */
static void
line_head(struct smtp_state *st, const char *p, size_t n)
{
	if (!st->binreply) {
		/* a reply nobody asked for (421 before closing) answers nothing */
		st->binreply = 1;
		st->bowned = st->qlen > 0 && refusal(st, q_head(st)) == NULL;
	}
	for (size_t i = 0; i < n && st->bheadlen < sizeof(st->bhead); i++)
		st->bhead[st->bheadlen++] = p[i];
}

static void
line_end(struct smtp_state *st)
{
	size_t n = st->bheadlen;

	st->bheadlen = 0;
	if (n > 0 && st->bhead[n - 1] == '\n')
		n--;
	if (n > 0 && st->bhead[n - 1] == '\r')
		n--;
	if (!reply_last(st->bhead, n))
		return;
	if (st->bowned)
		reply_done(st, reply_code(st->bhead, n));
	st->binreply = 0;
}

size_t
smtp_backend_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                    int full)
{
	struct smtp_state *st = state;
	size_t pos = 0, scan = st->bscan, n, k;
	int progress = 0, r;
	const char *lf;

	(void)cfg;
	st->bscan = 0;
	for (;;) {
		if (!st->binreply) {
			/* no room for our answer yet: wait until the core has written out
			 * what is final; but if what follows it fills the buffer (a core
			 * without headroom, a backend talking out of turn), pass that
			 * rather than block forever */
			r = inject(st, buf, len, cap, &pos);
			if (r < 0 && (!full || progress))
				break;
			if (r > 0) {
				progress = 1;
				continue;
			}
			if (pos < *len && q_head(st) == K_EHLO) {
				r = ehlo_reply(st, buf, len, &pos, full && !progress);
				if (r == 0)
					break;
				if (r == 1) {
					progress = 1;
					continue;
				}
			}
		}
		if (pos == *len)
			break;
		n = *len - pos;
		if (pos > 0 || progress || scan > n)
			scan = 0;
		lf = memchr(buf + pos + scan, '\n', n - scan);
		scan = 0;
		if (lf == NULL && !st->bmid && (!full || progress)) {
			st->bscan = n;
			break;
		}
		/* a whole line, or (bmid, or the buffer is full) what there is of it */
		k = lf != NULL ? (size_t)(lf - (buf + pos)) + 1 : n;
		line_head(st, buf + pos, k);
		pos += k;
		progress = 1;
		st->bmid = lf == NULL;
		if (lf != NULL)
			line_end(st);
	}
	return pos;
}
