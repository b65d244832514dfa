/* IMAP (RFC 3501) behind mailedge: the pre-TLS dialogue with STARTTLS (RFC 2595), the
 * backend dialogue, the relay filters and the capability probe. The replies are the
 * contract in BEHAVIOUR.md.
 *
 * The relay filters follow the IMAP grammar only as far as the stream's framing needs:
 * lines, literals ({n}, {n+} RFC 7888, ~{n} RFC 3516) and the few commands whose
 * continuation changes what the client sends next (synchronising literals,
 * AUTHENTICATE, COMPRESS). Everything else passes as it is.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

#define IMAP_MAX_LINE    8192
#define IMAP_INVALID_MAX 10
/* Tags we remember; a longer one is answered with "*" (no real client uses them). */
#define IMAP_TAG_MAX 128
/* Refusals waiting for a response boundary in the backend stream. */
#define IMAP_INJ_MAX 1024
/* The answer to a command line dropped because it filled the relay buffer, after its tag
 * or "*". */
#define IMAP_TOO_LONG " BAD Command line too long; discarded.\r\n"
/* Pre-TLS capability list: bounded so the greeting and CAPABILITY replies always fit
 * PROTO_OUT_MAX with their CRLF. */
#define IMAP_CAPS_MAX 2048
#define IMAP_HOST_MAX 255
#define IMAP_TEXT_MAX 512
/* Last bytes remembered of a line passed in pieces, so that a literal announced at its
 * end ("~{18446744073709551615+}\r") is still seen whole. */
#define IMAP_TAIL        32
#define IMAP_GREET_LINES 16
#define IMAP_PROBE_LINES 64
/* Backend dialogue with identity (IMAP ID): our tag, the longest value sent (Dovecot
 * takes 1024; a numeric address with a zone is under 64) and how many lines its answer
 * may take. No client tag is in flight then: the client's bytes reach the backend only
 * after the backend dialogue. */
#define IMAP_ID_TAG       "mailedge1"
#define IMAP_ID_VALUE_MAX 255
#define IMAP_ID_LINES     64

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

struct imap_probe {
	int step; /* 0 greeting, 1 CAPABILITY sent */
	unsigned lines;
	size_t used;
	int got;
};

/* One pre-TLS request, its tag and arguments (line ending excluded). */
struct imap_req {
	const char *tag;
	size_t taglen;
	const char *args;
	size_t arglen;
};

static const char imap_default_caps[] = "IMAP4rev1 ID ENABLE IDLE SASL-IR AUTH=PLAIN";

/* --- small lexical helpers --- */

static int
imap_eq(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* RFC 3501: CHAR except CTL, SP and specials. A tag is ASTRING-CHAR except "+", an
 * atom excludes "]". */
#define TAG_SPECIALS  "(){%*\"\\+"
#define ATOM_SPECIALS "(){%*\"\\]"
static int
imap_char(char c, const char *specials)
{
	return c > 0x20 && c < 0x7f && strchr(specials, c) == NULL;
}

static int
imap_space(char c)
{
	return c != '\0' && strchr(" \t\r\n", c) != NULL;
}

/* End of the token starting at i: SP, CR and LF end it. memchr, not a byte loop: a
 * line may be one long token. */
static size_t
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

static size_t
imap_skipsp(const char *p, size_t i, size_t n)
{
	while (i < n && p[i] == ' ')
		i++;
	return i;
}

/* A literal announced at the end of p[0..n) (line ending excluded): "{n}", "{n+}",
 * with or without "~". Sizes above 19 digits are not literals. */
static int
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

static size_t
imap_skip(uint64_t *left, size_t avail)
{
	size_t k = *left < avail ? (size_t)*left : avail;

	*left -= k;
	return k;
}

/* --- capabilities before TLS --- */

struct imap_caps {
	size_t len;
	char s[IMAP_CAPS_MAX];
};

static void
caps_add(struct imap_caps *c, const char *a, size_t n, size_t limit)
{
	if (c->len + 1 + n > limit)
		return;
	if (c->len > 0)
		c->s[c->len++] = ' ';
	memcpy(c->s + c->len, a, n);
	c->len += n;
}

/* Backend atoms not offered before TLS: those mailedge adds itself, and those it cannot
 * honour while it parses lines, not literals. */
static int
caps_hidden(const char *a, size_t n, enum proto_level level)
{
	static const char *const never[] = {"IMAP4rev1", "STARTTLS", "LOGINDISABLED", "LITERAL+",
	                                    "LITERAL-"};
	size_t i;

	for (i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		if (imap_eq(a, n, never[i]))
			return 1;
	if (level != PROTO_LEVEL_ENCRYPT)
		return 0;
	return imap_eq(a, n, "SASL-IR") || (n >= 5 && strncasecmp(a, "AUTH=", 5) == 0);
}

/* Appends the acceptable atoms of list (split on white space); returns how many. */
static int
caps_scan(struct imap_caps *c, const char *list, enum proto_level level)
{
	size_t i = 0, j, k;
	int found = 0;

	while (list[i] != '\0') {
		for (; imap_space(list[i]); i++)
			;
		for (j = i; list[j] != '\0' && !imap_space(list[j]); j++)
			;
		for (k = i; k < j && imap_char(list[k], ATOM_SPECIALS); k++)
			;
		if (j > i && k == j) {
			found++;
			if (!caps_hidden(list + i, j - i, level))
				caps_add(c, list + i, j - i, sizeof(c->s) - 32);
		}
		i = j;
	}
	return found;
}

static void
caps_build(const struct proto_config *cfg, struct imap_caps *c)
{
	c->len = 0;
	caps_add(c, "IMAP4rev1", 9, sizeof(c->s));
	if (cfg->caps == NULL || caps_scan(c, cfg->caps, cfg->level) == 0)
		caps_scan(c, imap_default_caps, cfg->level);
	caps_add(c, "STARTTLS", 8, sizeof(c->s));
	if (cfg->level == PROTO_LEVEL_ENCRYPT)
		caps_add(c, "LOGINDISABLED", 13, sizeof(c->s));
}

/* --- 1. pre-TLS dialogue --- */

static void
imap_init(void *v, const struct proto_config *cfg, int tls)
{
	struct imap_state *st = v;

	(void)cfg;
	memset(st, 0, sizeof(*st));
	st->tls = tls;
}

static void
imap_greeting(void *v, const struct proto_config *cfg, struct proto_out *out)
{
	struct imap_caps c;
	const char *host = cfg->hostname != NULL ? cfg->hostname : "localhost";
	const char *text = cfg->greeting != NULL ? cfg->greeting : "IMAP ready.";

	(void)v;
	caps_build(cfg, &c);
	proto_out_printf(out, "* OK [CAPABILITY %.*s] %.*s %.*s\r\n", (int)c.len, c.s,
	                 IMAP_HOST_MAX, host, IMAP_TEXT_MAX, text);
}

/* Counts an invalid command; the 10th gets BYE instead of its own reply. */
static int
imap_budget(struct imap_state *st, struct proto_out *out)
{
	if (++st->invalid < IMAP_INVALID_MAX)
		return 0;
	proto_out_printf(out, "* BYE Too many invalid IMAP commands.\r\n");
	return 1;
}

static enum proto_action
imap_refused(struct imap_state *st, const struct imap_req *r, const char *text,
             struct proto_out *out)
{
	if (imap_budget(st, out))
		return PROTO_CLOSE;
	proto_out_printf(out, "%.*s %s\r\n", (int)r->taglen, r->tag, text);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_syntax(struct imap_state *st, struct proto_out *out)
{
	if (imap_budget(st, out))
		return PROTO_CLOSE;
	proto_out_printf(out, "* BAD Error in IMAP command received by server.\r\n");
	return PROTO_CONTINUE;
}

static enum proto_action
pre_capability(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
               struct proto_out *out)
{
	struct imap_caps c;

	(void)st;
	caps_build(cfg, &c);
	proto_out_printf(out, "* CAPABILITY %.*s\r\n%.*s OK Capability completed.\r\n", (int)c.len,
	                 c.s, (int)r->taglen, r->tag);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_noop(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
         struct proto_out *out)
{
	(void)st;
	(void)cfg;
	proto_out_printf(out, "%.*s OK NOOP completed.\r\n", (int)r->taglen, r->tag);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_logout(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
           struct proto_out *out)
{
	(void)st;
	(void)cfg;
	proto_out_printf(out, "* BYE Logging out\r\n%.*s OK Logout completed.\r\n", (int)r->taglen,
	                 r->tag);
	return PROTO_CLOSE;
}

static enum proto_action
pre_starttls(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
             struct proto_out *out)
{
	(void)cfg;
	if (r->arglen > 0)
		return imap_refused(st, r, "BAD STARTTLS takes no arguments.", out);
	proto_out_printf(out, "%.*s OK Begin TLS negotiation now.\r\n", (int)r->taglen, r->tag);
	return PROTO_STARTTLS;
}

static enum proto_action
pre_backend(struct imap_state *st)
{
	st->relaying = 1;
	return PROTO_BACKEND;
}

static enum proto_action
pre_login(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
          struct proto_out *out)
{
	if (cfg->level != PROTO_LEVEL_ENCRYPT)
		return pre_backend(st);
	return imap_refused(st, r,
	                    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed: "
	                    "issue STARTTLS first.",
	                    out);
}

static enum proto_action
pre_other(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
          struct proto_out *out)
{
	if (cfg->level != PROTO_LEVEL_ENCRYPT)
		return pre_backend(st);
	return imap_refused(st, r, "BAD [PRIVACYREQUIRED] Command not permitted before STARTTLS.",
	                    out);
}

static const struct imap_pre {
	const char *name;
	enum proto_action (*fn)(struct imap_state *, const struct proto_config *,
	                        const struct imap_req *, struct proto_out *);
} imap_pre[] = {
    {"CAPABILITY", pre_capability}, {"NOOP", pre_noop},   {"LOGOUT", pre_logout},
    {"STARTTLS", pre_starttls},     {"LOGIN", pre_login}, {"AUTHENTICATE", pre_login},
};

static enum proto_action
imap_client_line(void *v, const struct proto_config *cfg, const char *line, size_t len,
                 struct proto_out *out)
{
	struct imap_state *st = v;
	struct imap_req r;
	size_t n, t, c, i;

	/* Under TLS, or once relaying, every byte belongs to the filters. */
	if (st->tls || st->relaying)
		return PROTO_CLOSE;
	n = proto_strip_eol(line, len);
	/* NUL, or more than one line handed over at once: never guess. */
	if (memchr(line, '\0', len) != NULL || memchr(line, '\n', n) != NULL)
		return pre_syntax(st, out);
	for (t = 0; t < n && line[t] != ' '; t++)
		if (!imap_char(line[t], TAG_SPECIALS))
			return pre_syntax(st, out);
	c = imap_skipsp(line, t, n);
	if (t == 0 || t > IMAP_TAG_MAX || c == n)
		return pre_syntax(st, out);
	r.tag = line;
	r.taglen = t;
	for (i = 0; i < sizeof(imap_pre) / sizeof(imap_pre[0]); i++)
		if (proto_word_is(line + c, len - c, imap_pre[i].name, &r.args, &r.arglen))
			return imap_pre[i].fn(st, cfg, &r, out);
	return pre_other(st, cfg, &r, out);
}

/* --- 2. backend dialogue --- */

/* Is line an untagged response with this first word ("* OK ...")? */
static int
imap_untagged(const char *line, size_t len, const char *word)
{
	size_t n = proto_strip_eol(line, len);

	if (n < 2 || line[0] != '*' || line[1] != ' ')
		return 0;
	return proto_word_is(line + 2, n - 2, word, NULL, NULL);
}

/* Appends "value" as an IMAP quoted string. Numeric addresses never need escaping, but
 * whatever the core hands over must not end the string early: '"' and '\' are escaped;
 * CR, LF, other controls and 8-bit bytes cannot be quoted at all (RFC 3501 9, QUOTED-
 * CHAR), so such a value, or one too long for Dovecot, is not sent (returns 0). */
static int
imap_quote(struct proto_out *o, const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > IMAP_ID_VALUE_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	proto_out_add(o, "\"", 1);
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			proto_out_add(o, "\\", 1);
		proto_out_add(o, s + i, 1);
	}
	proto_out_add(o, "\"", 1);
	return 1;
}

/* One address/port pair of the ID list; nothing when the address is missing or cannot
 * be quoted. */
static void
imap_id_pair(struct proto_out *o, const char *ipkey, const char *addr, const char *portkey,
             unsigned port)
{
	size_t mark = o->len;

	if (addr == NULL)
		return;
	proto_out_printf(o, "%s\"%s\" ", o->len > 0 ? " " : "", ipkey);
	if (!imap_quote(o, addr)) {
		o->len = mark;
		return;
	}
	proto_out_printf(o, " \"%s\" \"%u\"", portkey, port);
}

/* The ID command (RFC 2971) carrying the client's identity, with the fields Dovecot's
 * imap-login honours from a host in login_trusted_networks, and only in the first ID of
 * a connection (so a client's own ID, relayed later, cannot override them). Returns 0
 * when there is nothing to say. */
static int
imap_id_command(const struct proto_peer *peer, struct proto_out *to_backend)
{
	struct proto_out list;

	if (peer == NULL)
		return 0;
	list.len = 0;
	imap_id_pair(&list, "x-originating-ip", peer->addr, "x-originating-port", peer->port);
	imap_id_pair(&list, "x-connected-ip", peer->local_addr, "x-connected-port",
	             peer->local_port);
	if (list.len == 0)
		return 0;
	proto_out_printf(to_backend, IMAP_ID_TAG " ID (%.*s)\r\n", (int)list.len, list.data);
	return 1;
}

/* The backend's greeting. On an implicit-TLS listener the client has had no greeting
 * yet: it gets the backend's own, byte for byte (the backend filter still takes
 * STARTTLS out of its capability code, as for any response). */
static enum proto_bstep
imap_greeted(struct imap_state *st, const struct proto_config *cfg, const struct proto_peer *peer,
             const char *line, size_t len, struct proto_out *to_backend,
             struct proto_out *to_client)
{
	size_t eol = len > 0 && line[len - 1] == '\n' ? 0 : 2;

	if (cfg->implicit_tls) {
		if (to_client->len + len + eol > sizeof(to_client->data))
			return PROTO_B_FAIL; /* cannot be replayed whole */
		proto_out_add(to_client, line, len);
		proto_out_add(to_client, "\r\n", eol);
	}
	if (cfg->identity != PROTO_IDENT_IMAP_ID || !imap_id_command(peer, to_backend))
		return PROTO_B_DONE;
	st->bdlg = BD_ID;
	st->greet_lines = 0;
	return PROTO_B_SEND;
}

/* The answer to our ID, consumed: untagged data ("* ID (...)", "* ID NIL", anything
 * else a server says meanwhile, literals included), then our tagged OK, NO or BAD. A NO
 * or BAD is not fatal: the backend merely did not take the fields (Dovecot answers OK
 * and ignores them when mailedge is not a trusted network; a server without ID says
 * BAD). */
static enum proto_bstep
imap_id_answer(struct imap_state *st, const char *line, size_t len)
{
	size_t n, k;
	uint64_t size;
	int sync;

	if (++st->greet_lines > IMAP_ID_LINES)
		return PROTO_B_FAIL;
	if (st->dlit > 0) {
		/* Literal bytes of an untagged response: never a line of their own. */
		k = imap_skip(&st->dlit, len);
		if (st->dlit > 0 || k == len)
			return PROTO_B_MORE;
		line += k;
		len -= k;
	}
	if (st->dcont) {
		/* The response goes on after its literal. */
		st->dcont = 0;
	} else {
		if (imap_untagged(line, len, "BYE"))
			return PROTO_B_FAIL;
		if (proto_word_is(line, len, IMAP_ID_TAG, NULL, NULL))
			return PROTO_B_DONE;
		/* "+" asks for data we never announced; another tag was never sent. */
		if (len < 2 || line[0] != '*' || line[1] != ' ')
			return PROTO_B_FAIL;
	}
	n = proto_strip_eol(line, len);
	if (imap_literal(line, n, &size, &sync)) {
		st->dlit = size;
		st->dcont = 1;
	}
	return PROTO_B_MORE;
}

static enum proto_bstep
imap_backend_line(void *v, const struct proto_config *cfg, const struct proto_peer *peer,
                  const char *line, size_t len, struct proto_out *to_backend,
                  struct proto_out *to_client)
{
	struct imap_state *st = v;
	size_t n = proto_strip_eol(line, len);

	if (st->bdlg == BD_ID)
		return imap_id_answer(st, line, len);
	if (imap_untagged(line, len, "OK"))
		return imap_greeted(st, cfg, peer, line, len, to_backend, to_client);
	/* PREAUTH would skip the client's own login; BYE is a refusal (RFC 3501 7.1.5). */
	if (imap_untagged(line, len, "PREAUTH") || imap_untagged(line, len, "BYE"))
		return PROTO_B_FAIL;
	/* Other untagged data before the greeting is tolerated, a few lines only. */
	if (n > 2 && line[0] == '*' && line[1] == ' ' && ++st->greet_lines < IMAP_GREET_LINES)
		return PROTO_B_MORE;
	return PROTO_B_FAIL;
}

/* --- 3. relay filters --- */

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

static size_t
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

static size_t
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

/* --- 4. capability probe --- */

static void
imap_probe_init(void *v, const struct proto_config *cfg)
{
	(void)cfg;
	memset(v, 0, sizeof(struct imap_probe));
}

/* Appends the atoms of "* CAPABILITY ..." to caps, whole atoms only. */
static void
imap_probe_caps(struct imap_probe *pr, const char *p, size_t n, char *caps, size_t capslen)
{
	size_t i = 0, j, k;

	while (i < n) {
		i = imap_skipsp(p, i, n);
		j = imap_token(p, i, n);
		for (k = i; k < j && imap_char(p[k], ATOM_SPECIALS); k++)
			;
		if (j > i && k == j && pr->used + (j - i) + 2 <= capslen) {
			if (pr->used > 0)
				caps[pr->used++] = '\n';
			memcpy(caps + pr->used, p + i, j - i);
			pr->used += j - i;
			caps[pr->used] = '\0';
			pr->got = 1;
		}
		i = j < n ? j + 1 : n;
	}
}

static enum proto_probe
imap_probe_line(void *v, const struct proto_config *cfg, const char *line, size_t len,
                struct proto_out *out, char *caps, size_t capslen)
{
	struct imap_probe *pr = v;
	size_t n = proto_strip_eol(line, len);
	const char *args;
	size_t arglen;

	(void)cfg;
	if (++pr->lines > IMAP_PROBE_LINES || imap_untagged(line, len, "BYE"))
		return PROTO_P_FAIL;
	if (pr->step == 0) {
		if (!imap_untagged(line, len, "OK"))
			return PROTO_P_FAIL;
		if (capslen > 0)
			caps[0] = '\0';
		pr->step = 1;
		proto_out_printf(out, "P1 CAPABILITY\r\n");
		return PROTO_P_SEND;
	}
	if (n > 2 && line[0] == '*' && line[1] == ' ' &&
	    proto_word_is(line + 2, n - 2, "CAPABILITY", &args, &arglen)) {
		imap_probe_caps(pr, args, arglen, caps, capslen);
		return PROTO_P_MORE;
	}
	if (!proto_word_is(line, n, "P1", &args, &arglen))
		return PROTO_P_MORE;
	if (!pr->got || !proto_word_is(args, arglen, "OK", NULL, NULL))
		return PROTO_P_FAIL;
	proto_out_printf(out, "P2 LOGOUT\r\n");
	return PROTO_P_DONE;
}

const struct protocol protocol_imap = {
    .name = "imap",
    .max_line = IMAP_MAX_LINE,
    .state_size = sizeof(struct imap_state),
    /* RFC 3501 7.1.5: an untagged BYE as the first reply means the server refuses. */
    .tempfail_reply = "* BYE [UNAVAILABLE] Service temporarily unavailable, try again later\r\n",
    .too_long_reply = "* BYE Line too long.\r\n",
    .timeout_reply = "* BYE Disconnected for inactivity.\r\n",
    /* RFC 3501 5.4: the autologout timer is at least 30 minutes (IDLE clients rely on it). */
    .default_idle_timeout = 1800.0,
    .init = imap_init,
    .greeting = imap_greeting,
    .client_line = imap_client_line,
    .backend_line = imap_backend_line,
    .client_filter = imap_client_filter,
    .backend_filter = imap_backend_filter,
    .probe_state_size = sizeof(struct imap_probe),
    .probe_init = imap_probe_init,
    .probe_line = imap_probe_line,
};
