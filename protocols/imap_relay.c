/* IMAP relay filters (protocol.h, job 3): a client line that is, or may be, a STARTTLS
 * never reaches the backend and is answered in the backend's stream, at a response
 * boundary; STARTTLS is taken out of the backend's capabilities. The replies are the
 * contract in BEHAVIOUR.md; the state is struct imap_state (imap_int.h), shared with the
 * dialogues in imap.c.
 *
 * The filters follow the IMAP grammar only as far as the stream's framing needs: lines,
 * literals ({n}, {n+} RFC 7888, ~{n} RFC 3516) and the few commands whose continuation
 * changes what the client sends next (synchronising literals, AUTHENTICATE, COMPRESS,
 * IDLE). Everything else passes as it is.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "imap_int.h"

/* The answer to a command line dropped because it filled the relay buffer, after its tag
 * or "*". */
#define IMAP_TOO_LONG " BAD Command line too long; discarded.\r\n"

/* --- lines passed in pieces, bytes cut out --- */

static void
tail_add(struct imap_tail *t, const char *p, size_t n)
{
	size_t drop;

	if (n >= IMAP_TAIL) {
		p += n - IMAP_TAIL;
		n = IMAP_TAIL;
	}
	if (t->len + n > IMAP_TAIL) {
		drop = t->len + n - IMAP_TAIL;
		memmove(t->b, t->b + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->b + t->len, p, n);
	t->len += n;
}

/* A literal at the end of the line p[0..n) (with its line end), whose start may have been
 * passed already (t). Forgets t: the line is over. */
static int
imap_endliteral(struct imap_tail *t, const char *p, size_t n, uint64_t *size, int *sync)
{
	char s[2 * IMAP_TAIL];
	size_t k = n < IMAP_TAIL ? n : IMAP_TAIL, c = n < IMAP_TAIL ? t->len : 0;

	memcpy(s, t->b + t->len - c, c);
	memcpy(s + c, p + n - k, k);
	t->len = 0;
	return imap_literal(s, proto_strip_eol(s, c + k), size, sync);
}

static void
imap_cut(char *buf, size_t *len, size_t off, size_t n)
{
	memmove(buf + off, buf + off + n, *len - off - n);
	*len -= n;
}

/* The tag of the command being read, for our answer to it; 0 (answer with "*") when it
 * is unknown or not a valid tag (BEHAVIOUR.md): echoed, "+" would make the answer a
 * continuation request. */
static size_t
imap_ctag(const struct imap_state *st)
{
	size_t i;

	for (i = 0; i < st->ctaglen; i++)
		if (!imap_char(st->ctag[i], TAG_SPECIALS))
			return 0;
	return st->ctaglen;
}

/* Queues an answer to the command being read, text after its tag, for the next response
 * boundary (responses are tagged, order does not matter); 0 when the queue is full. */
static int
imap_answer(struct imap_state *st, const char *text)
{
	size_t tl = imap_ctag(st), tx = strlen(text);
	const char *tag = tl > 0 ? st->ctag : "*";

	tl = tl > 0 ? tl : 1;
	if (st->injlen + tl + tx > sizeof(st->inj))
		return 0;
	memcpy(st->inj + st->injlen, tag, tl);
	memcpy(st->inj + st->injlen + tl, text, tx);
	st->injlen += tl + tx;
	return 1;
}

/* Queues the refusal of the STARTTLS being read; 0 when the queue is full. */
static int
imap_refuse(struct imap_state *st)
{
	return imap_answer(st, st->tls ? " BAD TLS is already active.\r\n"
	                               : " BAD STARTTLS not available on this connection.\r\n");
}

/* Answers the command line being dropped for filling the relay buffer. Tagged, it goes
 * in as a refusal. Untagged, it names no command, so it waits until the backend has
 * answered the commands sent before it (a client could take it for their error); no
 * client waits for it, so a count thrown off by a line the backend ignored only delays
 * it. 0 when the queue is full. */
static int
imap_too_long(struct imap_state *st)
{
	if (imap_ctag(st) > 0)
		return imap_answer(st, IMAP_TOO_LONG);
	st->ubad++;
	st->ubadat = st->csent;
	return 1;
}

/* The command line p[0..n) goes to the backend: one more tagged answer owed, unless it
 * is IDLE's "DONE" (RFC 2177) or has no tag at all (answered untagged, if at all). */
static void
imap_sent(struct imap_state *st, const char *p, size_t n)
{
	int done = st->cidle && imap_eq(p, proto_strip_eol(p, n), "DONE");

	st->cidle = 0;
	if (!done && n > 0 && !imap_space(p[0]))
		st->csent++;
}

/* The backend answered a command: tagged, or "* BAD" (RFC 3501 7.1.3: a command line
 * whose tag it could not tell). */
static void
imap_said(struct imap_state *st)
{
	if (st->bsaid < st->csent)
		st->bsaid++;
}

static const struct {
	const char *name;
	enum imap_cmd cmd;
} imap_relay_cmds[] = {
    {"STARTTLS", CMD_STARTTLS},
    {"AUTHENTICATE", CMD_AUTH},
    {"COMPRESS", CMD_COMPRESS},
    {"IDLE", CMD_IDLE},
};

/* The command starting at p[0..n), complete or cut short. Remembers its tag. Any
 * first token counts as a tag and any number of spaces as the separator: whatever the
 * backend might read as STARTTLS is caught. */
static enum imap_cmd
imap_classify(struct imap_state *st, const char *p, size_t n, int complete)
{
	size_t t = imap_token(p, 0, n), w = imap_skipsp(p, t, n);
	size_t e = imap_token(p, w, n), i;

	st->ctaglen = t <= IMAP_TAG_MAX ? t : 0;
	memcpy(st->ctag, p, st->ctaglen);
	if (!complete && e == n)
		return e - w <= 8 && strncasecmp(p + w, "STARTTLS", e - w) == 0 ? CMD_MAYBE
		                                                                : CMD_OTHER;
	for (i = 0; i < sizeof(imap_relay_cmds) / sizeof(imap_relay_cmds[0]); i++)
		if (imap_eq(p + w, e - w, imap_relay_cmds[i].name))
			return imap_relay_cmds[i].cmd;
	return CMD_OTHER;
}

/* The end of a client line p[0..n): a literal follows, or the command is complete. */
static void
imap_cend(struct imap_state *st, const char *p, size_t n)
{
	uint64_t size;
	int sync;

	if (imap_endliteral(&st->ctail, p, n, &size, &sync)) {
		/* A synchronising literal comes only after the backend's "+"; it may
		 * refuse it with a tagged answer instead, and then the bytes are the
		 * next command. */
		st->ccont = 1;
		st->clit = size;
		st->cst = sync ? C_WAIT : C_LITERAL;
		st->wait = sync ? W_LITERAL : W_NONE;
		return;
	}
	st->ccont = 0;
	if (st->ccmd == CMD_AUTH) {
		st->cst = C_WAIT;
		st->wait = W_AUTH;
	} else if (st->ccmd == CMD_COMPRESS) {
		st->cst = C_WAIT;
		st->wait = W_COMPRESS;
	} else if (st->ccmd == CMD_IDLE)
		st->cidle = 1;
	st->ccmd = CMD_OTHER;
}

/* A complete client line at buf[*pos..*pos+n). Returns 0 to hold it. */
static int
imap_cline(struct imap_state *st, char *buf, size_t *len, size_t *pos, size_t n)
{
	char *p = buf + *pos;

	if (st->cst == C_DROP) {
		imap_cut(buf, len, *pos, n);
		st->cst = C_LINE;
		return 1;
	}
	if (st->cst == C_SASL) {
		*pos += n;
		st->cmid = 0;
		st->ctail.len = 0;
		st->cst = C_WAIT;
		return 1;
	}
	if (!st->ccont && !st->cmid) {
		st->ccmd = imap_classify(st, p, n, 1);
		if (st->ccmd != CMD_STARTTLS)
			imap_sent(st, p, n);
	}
	st->cmid = 0;
	if (st->ccmd == CMD_STARTTLS) {
		if (!imap_refuse(st))
			return 0;
		imap_cut(buf, len, *pos, n);
		st->ccmd = CMD_OTHER;
		st->ctail.len = 0;
		return 1;
	}
	*pos += n;
	imap_cend(st, p, n);
	return 1;
}

/* No line end in the client data, and none can come (buffer full, or end of input):
 * pass the line as it is, remembering its end, or drop it, answered, when it is, or may
 * be, a STARTTLS. After lines passed, wait: the room they free may let this one
 * complete. A line that may be STARTTLS waits too after lines removed (`full` is stale
 * then); other lines lose nothing by passing early. */
static void
imap_cpartial(struct imap_state *st, char *buf, size_t *len, size_t *pos, int removed)
{
	size_t n = *len - *pos;

	if (*pos > 0 || n == 0)
		return;
	if (st->cst == C_LINE && !st->ccont && !st->cmid) {
		st->ccmd = imap_classify(st, buf, n, 0);
		if ((st->ccmd == CMD_STARTTLS && !imap_refuse(st)) ||
		    (st->ccmd == CMD_MAYBE && (removed || !imap_too_long(st))))
			return;
		if (st->ccmd == CMD_STARTTLS || st->ccmd == CMD_MAYBE) {
			st->cst = C_DROP;
			st->ccmd = CMD_OTHER;
		} else
			imap_sent(st, buf, n);
	}
	if (st->cst == C_DROP) {
		*len = 0;
		return;
	}
	tail_add(&st->ctail, buf, n);
	st->cmid = 1;
	*pos = n;
}

size_t
imap_client_filter(void *v, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                   int full)
{
	struct imap_state *st = v;
	size_t pos = 0, in = *len;
	char *lf;

	(void)cfg;
	(void)cap;
	for (;;) {
		switch (st->cst) {
		case C_PASS:
			return *len;
		case C_WAIT:
			return pos;
		case C_LITERAL:
			pos += imap_skip(&st->clit, *len - pos);
			if (st->clit > 0)
				return pos;
			st->cst = C_LINE;
			break;
		default:
			lf = memchr(buf + pos, '\n', *len - pos);
			if (lf == NULL) {
				if (full)
					imap_cpartial(st, buf, len, &pos, *len != in);
				return pos;
			}
			if (!imap_cline(st, buf, len, &pos, (size_t)(lf - (buf + pos)) + 1))
				return pos;
		}
	}
}

/* Kind of the backend response starting at p[0..n); notes whether it is the tagged
 * answer the held client input waits for. */
static void
imap_bstart(struct imap_state *st, const char *p, size_t n)
{
	size_t t = imap_token(p, 0, n), w = imap_skipsp(p, t, n);
	size_t e = imap_token(p, w, n);
	int ok = imap_eq(p + w, e - w, "OK");

	st->bdone = 0;
	if (t == 1 && p[0] == '+') {
		st->bresp = R_CONT;
		return;
	}
	if (t == 1 && p[0] == '*') {
		st->bresp = ok || imap_eq(p + w, e - w, "NO") || imap_eq(p + w, e - w, "BAD") ||
		                    imap_eq(p + w, e - w, "BYE") || imap_eq(p + w, e - w, "PREAUTH")
		                ? R_STATUS
		                : R_DATA;
		if (imap_eq(p + w, e - w, "BAD"))
			imap_said(st);
		return;
	}
	st->bresp = R_STATUS;
	imap_said(st);
	if (st->wait != W_NONE &&
	    (st->ctaglen == 0 || (t == st->ctaglen && memcmp(p, st->ctag, t) == 0)))
		st->bdone = ok ? 1 : 2;
}

/* Region of a response line p[0..n) (line ending excluded) holding capability atoms:
 * "* CAPABILITY <atoms>" or "<tag> <status> [CAPABILITY <atoms>] text". */
static int
imap_capregion(const struct imap_state *st, const char *p, size_t n, size_t *a, size_t *b)
{
	size_t t = imap_token(p, 0, n), w = imap_skipsp(p, t, n);
	size_t e = imap_token(p, w, n);
	const char *close;

	if (st->bresp == R_DATA) {
		if (t != 1 || p[0] != '*' || !imap_eq(p + w, e - w, "CAPABILITY"))
			return 0;
		*a = e;
		*b = n;
		return 1;
	}
	if (st->bresp != R_STATUS)
		return 0;
	w = imap_skipsp(p, e, n);
	if (n - w < 12 || strncasecmp(p + w, "[CAPABILITY", 11) != 0 ||
	    (p[w + 11] != ' ' && p[w + 11] != ']'))
		return 0;
	close = memchr(p + w, ']', n - w);
	if (close == NULL)
		return 0;
	*a = w + 11;
	*b = (size_t)(close - p);
	return 1;
}

/* Removes every " STARTTLS" from the atoms s[0..n); returns the new length. */
static size_t
imap_capstrip(char *s, size_t n)
{
	size_t r = 0, w = 0, a, t;

	while (r < n) {
		a = r;
		r = imap_skipsp(s, r, n);
		t = r;
		while (r < n && s[r] != ' ')
			r++;
		if (a < t && imap_eq(s + t, r - t, "STARTTLS"))
			continue;
		memmove(s + w, s + a, r - a);
		w += r - a;
	}
	return w;
}

/* Capability filtering of a complete response line at buf[pos..pos+n). */
static size_t
imap_capfilter(struct imap_state *st, char *buf, size_t *len, size_t pos, size_t n)
{
	char *p = buf + pos;
	size_t a, b, kept;

	if (!imap_capregion(st, p, proto_strip_eol(p, n), &a, &b))
		return n;
	kept = imap_capstrip(p + a, b - a);
	imap_cut(buf, len, pos + a + kept, b - a - kept);
	return n - (b - a - kept);
}

/* The end of a backend response: what the held client input was waiting for. */
static void
imap_bend(struct imap_state *st)
{
	if (st->bresp == R_CONT && st->cst == C_WAIT) {
		if (st->wait == W_LITERAL) {
			st->cst = C_LITERAL;
			st->wait = W_NONE;
		} else if (st->wait == W_AUTH)
			st->cst = C_SASL;
		return;
	}
	if (st->bresp != R_STATUS || st->bdone == 0 || st->wait == W_NONE)
		return;
	if (st->wait == W_COMPRESS && st->bdone == 1) {
		/* RFC 4978: both directions are compressed right after this CRLF. */
		st->cst = C_PASS;
		st->bst = B_PASS;
	} else {
		/* A refused literal, a finished AUTHENTICATE: back to commands. */
		st->cst = C_LINE;
		st->ccont = 0;
		st->ccmd = CMD_OTHER;
	}
	st->wait = W_NONE;
}

/* A complete backend line at buf[*pos..*pos+n). */
static void
imap_bline(struct imap_state *st, char *buf, size_t *len, size_t *pos, size_t n)
{
	char *p = buf + *pos;
	uint64_t size;
	int sync;

	if (!st->bcont && !st->bmid) {
		imap_bstart(st, p, n);
		n = imap_capfilter(st, buf, len, *pos, n);
	}
	st->bmid = 0;
	*pos += n;
	/* Status responses and "+" carry text, never literals (RFC 3501 9). */
	if (imap_endliteral(&st->btail, p, n, &size, &sync) && st->bresp == R_DATA) {
		st->bst = B_LITERAL;
		st->blit = size;
		st->bcont = 1;
		return;
	}
	st->bcont = 0;
	imap_bend(st);
}

/* Like imap_cpartial: a response line that cannot complete passes as it is. */
static void
imap_bpartial(struct imap_state *st, char *buf, size_t *len, size_t *pos)
{
	if (*pos > 0 || *len == 0)
		return;
	if (!st->bcont && !st->bmid)
		imap_bstart(st, buf, *len);
	tail_add(&st->btail, buf, *len);
	st->bmid = 1;
	*pos = *len;
}

static void
imap_insert(char *buf, size_t *len, size_t pos, const char *s, size_t n)
{
	memmove(buf + pos + n, buf + pos, *len - pos);
	memcpy(buf + pos, s, n);
	*len += n;
}

/* Our answers go in at a response boundary, as many whole ones as there is room for:
 * the queued ones, then the untagged IMAP_TOO_LONG ones whose turn has come. */
static size_t
imap_inject(struct imap_state *st, char *buf, size_t *len, size_t pos, size_t cap)
{
	static const char bad[] = "*" IMAP_TOO_LONG;
	size_t n = 0, room = cap > *len ? cap - *len : 0;
	const char *lf;

	while (n < st->injlen && (lf = memchr(st->inj + n, '\n', st->injlen - n)) != NULL &&
	       (size_t)(lf - st->inj) + 1 <= room)
		n = (size_t)(lf - st->inj) + 1;
	if (n > 0) {
		imap_insert(buf, len, pos, st->inj, n);
		memmove(st->inj, st->inj + n, st->injlen - n);
		st->injlen -= n;
	}
	while (st->ubad > 0 && st->bsaid >= st->ubadat && room - n >= sizeof(bad) - 1) {
		imap_insert(buf, len, pos + n, bad, sizeof(bad) - 1);
		n += sizeof(bad) - 1;
		st->ubad--;
	}
	return n;
}

size_t
imap_backend_filter(void *v, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                    int full)
{
	struct imap_state *st = v;
	size_t pos = 0;
	char *lf;

	(void)cfg;
	for (;;) {
		switch (st->bst) {
		case B_PASS:
			st->injlen = 0;
			st->ubad = 0;
			return *len;
		case B_LITERAL:
			pos += imap_skip(&st->blit, *len - pos);
			if (st->blit > 0)
				return pos;
			st->bst = B_LINE;
			break;
		case B_LINE:
			if (!st->bcont && !st->bmid)
				pos += imap_inject(st, buf, len, pos, cap);
			lf = memchr(buf + pos, '\n', *len - pos);
			if (lf == NULL) {
				if (full)
					imap_bpartial(st, buf, len, &pos);
				return pos;
			}
			imap_bline(st, buf, len, &pos, (size_t)(lf - (buf + pos)) + 1);
			break;
		}
	}
}
