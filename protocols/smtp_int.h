/* Private to the SMTP module: the session state that smtp.c (pre-TLS dialogue, backend
 * dialogue, capability probe) and smtp_relay.c (relay filters) share, with the queue of
 * commands awaiting a reply and the small reply/keyword helpers both use. The interface
 * to the core is protocol.h.
 */
#ifndef MAILEDGE_SMTP_INT_H
#define MAILEDGE_SMTP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

#define SMTP_LINE_MAX  1000 /* pre-TLS command line, CRLF included (RFC says 512) */
#define SMTP_QUEUE_MAX 64   /* commands awaiting a reply; the client waits beyond */

/* What the backend's next reply answers. */
enum smtp_kind {
	K_REPLY,      /* any command answered once (also the greeting, end of data) */
	K_HELO,       /* answered once; no extensions after it */
	K_BDAT,       /* answered once, after its chunk */
	K_EHLO,       /* capability list to filter */
	K_DATA,       /* 354 opens the body */
	K_AUTH,       /* 334 makes the next client line SASL data */
	K_REFUSE_TLS, /* STARTTLS, answered by us: the backend never saw it */
	K_REFUSE,     /* XCLIENT/XFORWARD, answered by us */
	K_TOO_LONG,   /* a command line longer than the relay buffer, dropped */
};

/* Client -> backend stream. */
enum smtp_cmode {
	C_CMD,       /* command lines */
	C_WAIT,      /* after DATA/AUTH/SASL: hold until the backend answered */
	C_BODY,      /* DATA body, up to the end-of-data line */
	C_CHUNK,     /* BDAT chunk: `chunk` more bytes */
	C_SASL,      /* the next line answers a 334 challenge */
	C_SASL_REST, /* rest of a SASL line passed before its end */
	C_DROP,      /* rest of an unbounded command line, discarded */
};

/* Backend dialogue: what the backend's next reply answers. */
enum smtp_bstage {
	BS_GREETING, /* its greeting */
	BS_EHLO,     /* mailedge's own EHLO: does it offer XCLIENT? */
	BS_XCLIENT,  /* XCLIENT: a new greeting (220) */
	BS_REPLAY,   /* the client's EHLO/HELO, replayed */
	BS_DONE,
};

struct smtp_state {
	int tls;
	int errors;
	/* Plaintext `may`: the client's last EHLO/HELO, replayed to the backend. Implicit
	 * TLS: the backend's greeting, for the client. A session needs only one of them. */
	size_t helo_len;
	union {
		char helo[SMTP_LINE_MAX + 8];
		char greet[SMTP_LINE_MAX + 8];
	};
	size_t greet_len;
	int greet_cut;  /* lines of the greeting did not fit and were left out */
	int greet_keep; /* the reply being read is the greeting to keep */

	enum smtp_bstage bstage;
	unsigned bline;   /* lines of the current backend reply read so far */
	unsigned xattrs;  /* XCLIENT attributes the backend offers */
	unsigned xsecond; /* attributes for a second XCLIENT command, 0: none */
	int chunking;     /* the backend's last EHLO reply offered CHUNKING */

	/* commands awaiting a reply, oldest first */
	unsigned char q[SMTP_QUEUE_MAX];
	unsigned qhead, qlen;

	enum smtp_cmode cmode;
	int dot;        /* end-of-data matcher state, see dot_step() */
	uint64_t chunk; /* BDAT bytes still to pass */
	size_t cscan;   /* held client line: bytes known to hold no LF */

	int bmid;     /* a backend line was passed before its LF */
	int binreply; /* inside a backend reply (after its first byte) */
	int bowned;   /* ... which answers the queue's head */
	size_t bheadlen;
	char bhead[4]; /* first bytes of the current backend line */
	size_t bscan;
};

/* Three digits, or -1. */
static inline int
reply_code(const char *p, size_t n)
{
	if (n < 3 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' ||
	    p[2] > '9')
		return -1;
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* "250-..." continues a reply; anything else ends it (RFC 5321 4.2.1). */
static inline int
reply_last(const char *p, size_t n)
{
	return n < 4 || p[3] != '-';
}

static inline size_t
word_len(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && p[i] != ' ' && p[i] != '\t'; i++)
		;
	return i;
}

static inline int
word_eq(const char *p, size_t n, const char *w)
{
	return n == strlen(w) && strncasecmp(p, w, n) == 0;
}

/* An EHLO keyword line ("SIZE 1000") mailedge must not pass on. */
static inline int
cap_hidden(const char *kw, size_t n, int no_auth)
{
	size_t w = word_len(kw, n);

	if (word_eq(kw, w, "STARTTLS") || word_eq(kw, w, "XCLIENT") || word_eq(kw, w, "XFORWARD"))
		return 1;
	return no_auth && (word_eq(kw, w, "AUTH") || (w >= 5 && strncasecmp(kw, "AUTH=", 5) == 0));
}

/* --- queue of commands awaiting a reply --- */

static inline int
q_push(struct smtp_state *st, enum smtp_kind k)
{
	if (st->qlen == SMTP_QUEUE_MAX)
		return 0;
	st->q[(st->qhead + st->qlen++) % SMTP_QUEUE_MAX] = (unsigned char)k;
	return 1;
}

static inline int
q_head(const struct smtp_state *st)
{
	return st->qlen > 0 ? st->q[st->qhead] : -1;
}

static inline void
q_pop(struct smtp_state *st)
{
	if (st->qlen == 0)
		return;
	st->qhead = (st->qhead + 1) % SMTP_QUEUE_MAX;
	st->qlen--;
}

/* --- relay filters (smtp_relay.c) --- */

size_t smtp_client_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len,
                          size_t cap, int full);
size_t smtp_backend_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len,
                           size_t cap, int full);

#endif
