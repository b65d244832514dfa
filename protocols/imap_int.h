/* Private to the IMAP module: the session state that imap.c (pre-TLS dialogue, backend
 * dialogue, capability probe) and imap_relay.c (relay filters) share, and the lexical
 * helpers both use. The interface to the core is protocol.h.
 */
#ifndef MAILEDGE_IMAP_INT_H
#define MAILEDGE_IMAP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

/* Tags we remember; a longer one is answered with "*" (no real client uses them). */
#define IMAP_TAG_MAX 128
/* Refusals waiting for a response boundary in the backend stream. */
#define IMAP_INJ_MAX 1024
/* Last bytes remembered of a line passed in pieces, so that a literal announced at its
 * end ("~{18446744073709551615+}\r") is still seen whole. */
#define IMAP_TAIL 32

/* Commands the client filter must know about; the rest are relayed as they are.
 * CMD_MAYBE: a line cut short before its command name ends, which may be STARTTLS. */
enum imap_cmd { CMD_OTHER, CMD_STARTTLS, CMD_AUTH, CMD_COMPRESS, CMD_IDLE, CMD_MAYBE };

enum imap_cstate {
	C_LINE,    /* reading a command line */
	C_LITERAL, /* passing literal bytes */
	C_WAIT,    /* holding input until the backend answers (see enum imap_wait) */
	C_SASL,    /* one line of SASL data answering a "+" */
	C_DROP,    /* discarding the rest of a refused line */
	C_PASS,    /* stream compressed (RFC 4978): no longer parsable */
};

/* Why client input is held: the client itself waits for the same answer. */
enum imap_wait { W_NONE, W_LITERAL, W_AUTH, W_COMPRESS };

enum imap_bstate { B_LINE, B_LITERAL, B_PASS };

/* Backend dialogue: the greeting, then (identity IMAP ID) the answer to our ID. */
enum imap_bdlg { BD_GREETING, BD_ID };

/* Kind of backend response, known from its start; decides what its end does. */
enum imap_resp { R_DATA, R_STATUS, R_CONT };

struct imap_tail {
	size_t len;
	char b[IMAP_TAIL];
};

struct imap_state {
	int tls;
	int relaying; /* PROTO_BACKEND given: no more pre-TLS lines */
	unsigned invalid;
	/* backend dialogue */
	enum imap_bdlg bdlg;
	unsigned greet_lines; /* lines read in the current step */
	uint64_t dlit;        /* literal bytes left in the answer to ID */
	int dcont;            /* the next bytes after the literal continue the response */

	/* client -> backend */
	enum imap_cstate cst;
	enum imap_wait wait;
	enum imap_cmd ccmd; /* command being read; acted on at its end */
	int ccont;          /* the current line continues a command after a literal */
	int cmid;           /* the start of the current line was passed already */
	uint64_t clit;      /* literal bytes left (or announced, while waiting for "+") */
	size_t ctaglen;     /* 0: unknown, any tagged answer ends a wait */
	char ctag[IMAP_TAG_MAX];
	struct imap_tail ctail;
	int cidle;       /* the last command was IDLE: a "DONE" line ends it, no command */
	uint64_t csent;  /* command lines forwarded (see imap_sent) */
	uint64_t bsaid;  /* ... answered by the backend so far, never more than csent */
	uint64_t ubad;   /* untagged IMAP_TOO_LONG answers waiting ... */
	uint64_t ubadat; /* ... until bsaid reaches this */

	/* backend -> client */
	enum imap_bstate bst;
	enum imap_resp bresp;
	int bcont, bmid;
	int bdone; /* this response ends the wait: 1 tagged OK, 2 NO/BAD */
	uint64_t blit;
	struct imap_tail btail;

	size_t injlen;
	char inj[IMAP_INJ_MAX];
};

/* --- small lexical helpers --- */

static inline int
imap_eq(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* RFC 3501: CHAR except CTL, SP and specials. A tag is ASTRING-CHAR except "+", an
 * atom excludes "]". */
#define TAG_SPECIALS  "(){%*\"\\+"
#define ATOM_SPECIALS "(){%*\"\\]"
static inline int
imap_char(char c, const char *specials)
{
	return c > 0x20 && c < 0x7f && strchr(specials, c) == NULL;
}

static inline int
imap_space(char c)
{
	return c != '\0' && strchr(" \t\r\n", c) != NULL;
}

/* End of the token starting at i: SP, CR and LF end it. memchr, not a byte loop: a
 * line may be one long token. */
static inline size_t
imap_token(const char *p, size_t i, size_t n)
{
	static const char stops[] = " \r\n";
	const char *e;
	size_t k;

	for (k = 0; k < sizeof(stops) - 1; k++)
		if ((e = memchr(p + i, stops[k], n - i)) != NULL)
			n = (size_t)(e - p);
	return n;
}

static inline size_t
imap_skipsp(const char *p, size_t i, size_t n)
{
	while (i < n && p[i] == ' ')
		i++;
	return i;
}

/* A literal announced at the end of p[0..n) (line ending excluded): "{n}", "{n+}",
 * with or without "~". Sizes above 19 digits are not literals. */
static inline int
imap_literal(const char *p, size_t n, uint64_t *size, int *sync)
{
	size_t i, j;
	uint64_t v = 0;

	if (n < 3 || p[n - 1] != '}')
		return 0;
	i = n - 1;
	*sync = p[i - 1] != '+';
	if (!*sync)
		i--;
	for (j = i; j > 0 && p[j - 1] >= '0' && p[j - 1] <= '9'; j--)
		;
	if (j == i || i - j > 19 || j == 0 || p[j - 1] != '{')
		return 0;
	for (; j < i; j++)
		v = v * 10 + (uint64_t)(p[j] - '0');
	*size = v;
	return 1;
}

static inline size_t
imap_skip(uint64_t *left, size_t avail)
{
	size_t k = *left < avail ? (size_t)*left : avail;

	*left -= k;
	return k;
}

/* --- 3. relay filters (imap_relay.c) --- */

size_t imap_client_filter(void *v, const struct proto_config *cfg, char *buf, size_t *len,
                          size_t cap, int full);
size_t imap_backend_filter(void *v, const struct proto_config *cfg, char *buf, size_t *len,
                           size_t cap, int full);

#endif
